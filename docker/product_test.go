package docker

import (
	"bufio"
	"bytes"
	"path/filepath"
	"strings"
	"testing"
)

// productCommands are the subcommands of the product binary (meshgate);
// the developer tools (legacy-server, legacy-client, call, bench, demo)
// are only in meshgate-dev.
var productCommands = map[string]bool{"run": true, "validate": true, "envoy-bootstrap": true, "xds": true, "version": true}

// TestProductImageIsProxyOnly: docker/Dockerfile builds and ships only the
// product binary (and the wasm filter), and every compose service or
// Kubernetes container running the product image runs a product command;
// tool roles (e.g. a stand-in legacy server) use the meshgate-dev image.
func TestProductImageIsProxyOnly(t *testing.T) {
	data := readFile(t, "Dockerfile")
	allowed := map[string]bool{"./meshgate/cmd/meshgate": true, "./mgpfilter": true}
	sc := bufio.NewScanner(bytes.NewReader(data))
	built := 0
	for n := 1; sc.Scan(); n++ {
		line := sc.Text()
		if strings.Contains(line, "meshgate-dev") && !strings.HasPrefix(strings.TrimSpace(line), "#") {
			t.Errorf("Dockerfile:%d: the product image references the tools binary: %s", n, line)
		}
		if !strings.Contains(line, "go build") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if strings.HasPrefix(f, "./") {
				built++
				if !allowed[f] {
					t.Errorf("Dockerfile:%d: builds %s; the product image builds only %v", n, f, allowed)
				}
			}
		}
	}
	if built == 0 {
		t.Error("Dockerfile builds no package")
	}

	// Compose: services on the product image run product commands.
	for f, services := range composeFiles(t) {
		for name, s := range services {
			if isProductImage(s.Image) && len(s.Command) > 0 && !productCommands[s.Command[0]] {
				t.Errorf("%s: service %s runs %q on the product image %s; tools run from the meshgate-dev image", f, name, s.Command[0], s.Image)
			}
		}
	}

	// Kubernetes: containers on the product image run product commands.
	manifests, _ := filepath.Glob("k8s/*.yaml")
	for _, f := range manifests {
		for _, doc := range yamlDocs[any](t, f) {
			walkContainers(doc, func(image string, args []any) {
				if isProductImage(image) && len(args) > 0 {
					if a, _ := args[0].(string); !productCommands[a] {
						t.Errorf("%s: container on the product image %s runs %q", f, image, a)
					}
				}
			})
		}
	}
}

// isProductImage reports whether image is the product image (meshgate:TAG
// or …/meshgate:TAG), not meshgate-dev or meshgate-envoy.
func isProductImage(image string) bool {
	name := image
	if i := strings.LastIndex(name, "/"); i >= 0 {
		name = name[i+1:]
	}
	if i := strings.IndexAny(name, ":@"); i >= 0 {
		name = name[:i]
	}
	return name == "meshgate"
}

// walkContainers calls fn for every map with an "image" key under v, with
// its args (or command).
func walkContainers(v any, fn func(image string, args []any)) {
	switch x := v.(type) {
	case map[string]any:
		if img, ok := x["image"].(string); ok {
			args, _ := x["args"].([]any)
			if args == nil {
				args, _ = x["command"].([]any)
			}
			fn(img, args)
		}
		for _, c := range x {
			walkContainers(c, fn)
		}
	case []any:
		for _, c := range x {
			walkContainers(c, fn)
		}
	}
}
