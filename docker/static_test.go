package docker

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/meshgate/config"
)

// yamlFiles lists the YAML files under dirs.
func yamlFiles(t *testing.T, dirs ...string) []string {
	t.Helper()
	var out []string
	for _, d := range dirs {
		err := filepath.WalkDir(d, func(p string, de os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !de.IsDir() && (strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				out = append(out, p)
			}
			return nil
		})
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			t.Fatal(err)
		}
	}
	if len(out) == 0 {
		t.Fatal("no manifests found")
	}
	return out
}

// TestManifestsParse checks every K8s document has apiVersion/kind/metadata
// and every embedded meshgate.yaml passes config validation.
func TestManifestsParse(t *testing.T) {
	for _, f := range yamlFiles(t, "k8s") {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(data))
		for i := 0; ; i++ {
			var doc map[string]any
			if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Fatalf("%s doc %d: %v", f, i, err)
			}
			if doc == nil {
				continue
			}
			for _, k := range []string{"apiVersion", "kind", "metadata"} {
				if _, ok := doc[k]; !ok {
					t.Errorf("%s doc %d: missing %s", f, i, k)
				}
			}
			if doc["kind"] != "ConfigMap" {
				continue
			}
			data, _ := doc["data"].(map[string]any)
			for name, v := range data {
				if !strings.HasPrefix(name, "meshgate") {
					continue
				}
				if _, err := config.Parse([]byte(v.(string)), "."); err != nil {
					t.Errorf("%s doc %d: %s does not validate: %v", f, i, name, err)
				}
			}
		}
	}
}

// TestComposeConfigs validates every MeshGate config shipped for compose.
func TestComposeConfigs(t *testing.T) {
	files, _ := filepath.Glob("compose/*meshgate*.yaml")
	for _, f := range files {
		if _, err := config.Load(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	composes, _ := filepath.Glob("compose/compose*.yaml")
	for _, f := range composes {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		var doc struct {
			Services map[string]struct {
				Image   string   `yaml:"image"`
				Volumes []string `yaml:"volumes"`
			} `yaml:"services"`
		}
		if err := yaml.Unmarshal(data, &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if len(doc.Services) == 0 {
			t.Errorf("%s: no services", f)
		}
		for name, s := range doc.Services {
			for _, v := range s.Volumes {
				src := strings.SplitN(v, ":", 2)[0]
				if strings.HasPrefix(src, "./") {
					if _, err := os.Stat(filepath.Join("compose", src)); err != nil {
						t.Errorf("%s: service %s mounts missing %s", f, name, src)
					}
				}
			}
		}
	}
}

var fromRe = regexp.MustCompile(`^FROM\s+(?:--platform=\S+\s+)?(\S+)`)

// TestDockerfiles checks base images are pinned and COPY sources exist.
func TestDockerfiles(t *testing.T) {
	files, _ := filepath.Glob("Dockerfile*")
	if len(files) == 0 {
		t.Fatal("no Dockerfiles")
	}
	for _, f := range files {
		fh, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(fh)
		stages := map[string]bool{}
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if m := fromRe.FindStringSubmatch(line); m != nil {
				img := m[1]
				if !strings.HasPrefix(img, "${") && !stages[img] && (!strings.Contains(img, ":") || strings.HasSuffix(img, ":latest")) {
					t.Errorf("%s:%d: base image %q is not pinned", f, n, img)
				}
				if fs := strings.Fields(line); len(fs) >= 4 && strings.EqualFold(fs[len(fs)-2], "AS") {
					stages[fs[len(fs)-1]] = true
				}
			}
			if strings.HasPrefix(line, "COPY ") && !strings.Contains(line, "--from=") {
				fs := strings.Fields(line)
				for _, src := range fs[1 : len(fs)-1] {
					if src == "." {
						continue
					}
					if _, err := os.Stat(filepath.Join("..", src)); err != nil {
						t.Errorf("%s:%d: COPY source %s does not exist in the repo", f, n, src)
					}
				}
			}
		}
		fh.Close()
	}
}

// TestReadmeConfigExample keeps the README's configuration example valid.
func TestReadmeConfigExample(t *testing.T) {
	data, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(data)
	i := strings.Index(s, "## Configuration")
	if i < 0 {
		t.Fatal("README has no Configuration section")
	}
	j := strings.Index(s[i:], "```yaml\n")
	if j < 0 {
		t.Fatal("README Configuration section has no yaml block")
	}
	body := s[i+j+len("```yaml\n"):]
	body = body[:strings.Index(body, "```")]
	if _, err := config.Parse([]byte(body), "."); err != nil {
		t.Fatalf("README config example does not validate: %v", err)
	}
}
