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

// yamlDocs decodes every document of the YAML file f, each into a new T.
func yamlDocs[T any](t *testing.T, f string) []T {
	t.Helper()
	var out []T
	dec := yaml.NewDecoder(bytes.NewReader(readFile(t, f)))
	for {
		var doc T
		if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
			return out
		} else if err != nil {
			t.Fatalf("%s doc %d: %v", f, len(out), err)
		}
		out = append(out, doc)
	}
}

// composeService is what the tests read of a compose service.
type composeService struct {
	Image   string   `yaml:"image"`
	Command []string `yaml:"command"`
	Volumes []string `yaml:"volumes"`
}

// composeFiles reads the services of every compose/compose*.yaml, by file.
func composeFiles(t *testing.T) map[string]map[string]composeService {
	t.Helper()
	files, _ := filepath.Glob("compose/compose*.yaml")
	out := map[string]map[string]composeService{}
	for _, f := range files {
		var doc struct {
			Services map[string]composeService `yaml:"services"`
		}
		if err := yaml.Unmarshal(readFile(t, f), &doc); err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		out[f] = doc.Services
	}
	return out
}

// readFile is f's contents; the test fails when f cannot be read.
func readFile(t *testing.T, f string) []byte {
	t.Helper()
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestManifestsParse checks every K8s document has apiVersion/kind/metadata
// and every embedded meshgate.yaml passes config validation.
func TestManifestsParse(t *testing.T) {
	for _, f := range yamlFiles(t, "k8s") {
		for i, doc := range yamlDocs[map[string]any](t, f) {
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
	for f, services := range composeFiles(t) {
		if len(services) == 0 {
			t.Errorf("%s: no services", f)
		}
		for name, s := range services {
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

// TestReadmeConfigExamples keeps every config the README shows valid: a
// yaml block whose first line names a file ("# examples/NAME.yaml ...")
// must be that file, byte for byte; e2e's TestValidateShippedConfigs runs
// the real binary's validate on every file under examples/, the files it
// references included. At least the Configuration section's example must
// be such a block.
func TestReadmeConfigExamples(t *testing.T) {
	data := readFile(t, "../README.md")
	s := string(data)
	i := strings.Index(s, "## Configuration")
	if i < 0 {
		t.Fatal("README has no Configuration section")
	}
	first := true
	checked := 0
	for rest := s; ; {
		j := strings.Index(rest, "```yaml\n")
		if j < 0 {
			break
		}
		body := rest[j+len("```yaml\n"):]
		end := strings.Index(body, "```")
		if end < 0 {
			t.Fatal("unterminated yaml block")
		}
		block := body[:end]
		rest = body[end+3:]
		name, ok := strings.CutPrefix(block, "# examples/")
		if !ok {
			if first && len(s)-len(rest) > i {
				t.Fatal("the Configuration section's first yaml block is not an examples/ file")
			}
			continue
		}
		if len(s)-len(rest) > i {
			first = false
		}
		name = "examples/" + name[:strings.IndexAny(name, " \n")]
		file, err := os.ReadFile("../" + name)
		if err != nil {
			t.Fatalf("README shows %s: %v", name, err)
		}
		if string(file) != block {
			t.Errorf("README's %s block differs from the file", name)
		}
		if _, err := config.Parse(file, "../examples"); err != nil {
			t.Errorf("%s does not parse: %v", name, err)
		}
		checked++
	}
	if checked < 2 {
		t.Fatalf("%d README config blocks checked, want the Configuration and xDS examples", checked)
	}
}
