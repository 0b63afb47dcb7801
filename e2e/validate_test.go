package e2e

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/e2e/harness"
)

// shippedConfigs returns every MeshGate config shipped under docker/ and
// examples/: YAML files with a top-level listeners key, as they are (their
// certificate paths are relative to them: the published example PKI in
// docker/compose/certs), and the meshgate*.yaml entries of Kubernetes
// ConfigMaps, written to dir.
func shippedConfigs(t *testing.T, dir string) []string {
	t.Helper()
	root := harness.RepoRoot()
	var out []string
	for _, d := range []string{"docker", "examples"} {
		err := filepath.WalkDir(filepath.Join(root, d), func(p string, de os.DirEntry, err error) error {
			if err != nil || de.IsDir() || !(strings.HasSuffix(p, ".yaml") || strings.HasSuffix(p, ".yml")) {
				return err
			}
			data, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			dec := yaml.NewDecoder(bytes.NewReader(data))
			for i := 0; ; i++ {
				var doc map[string]any
				if err := dec.Decode(&doc); errors.Is(err, io.EOF) {
					break
				} else if err != nil {
					return fmt.Errorf("%s: %w", p, err)
				}
				if _, ok := doc["listeners"]; ok {
					out = append(out, p)
					break
				}
				if doc["kind"] != "ConfigMap" {
					continue
				}
				cm, _ := doc["data"].(map[string]any)
				for name, v := range cm {
					if s, ok := v.(string); ok && strings.HasPrefix(name, "meshgate") {
						cp := filepath.Join(dir, fmt.Sprintf("%s.%d.%s", filepath.Base(p), i, name))
						if err := os.WriteFile(cp, []byte(s), 0o600); err != nil {
							return err
						}
						out = append(out, cp)
					}
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestValidateShippedConfigs: `meshgate validate` accepts every config
// shipped in docker/ and examples/, files included (examples/meshgate.yaml
// is the README's example with its codecs/le16.yaml).
func TestValidateShippedConfigs(t *testing.T) {
	bin := harness.MeshgateBin(t)
	files := shippedConfigs(t, t.TempDir())
	want := map[string]bool{"examples/meshgate.yaml": false, "examples/xds.yaml": false, "docker/compose/bridge-meshgate.yaml": false, "sidecar.yaml.0.meshgate.yaml": false}
	for _, f := range files {
		for w := range want {
			if strings.HasSuffix(f, w) {
				want[w] = true
			}
		}
		// From the file's directory, as a user would run it.
		cmd := exec.Command(bin, "validate", "-c", filepath.Base(f))
		cmd.Dir = filepath.Dir(f)
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "OK" {
			t.Errorf("validate %s: %v\n%s", f, err, out)
		}
	}
	for w, seen := range want {
		if !seen {
			t.Errorf("shipped config %s not found among %v", w, files)
		}
	}
}

// TestExamplePKINotExpiring: the published example certificates the
// shipped configs name stay valid for at least another year, so that this
// fails long before `meshgate validate` of the examples does.
func TestExamplePKINotExpiring(t *testing.T) {
	files, err := filepath.Glob(filepath.Join(harness.RepoRoot(), "docker", "compose", "certs", "*.pem"))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range files {
		if strings.HasSuffix(f, "-key.pem") {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		block, _ := pem.Decode(data)
		if block == nil {
			t.Fatalf("%s: no PEM block", f)
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if left := time.Until(c.NotAfter); left < 365*24*time.Hour {
			t.Errorf("%s expires %s: regenerate with `meshgate-dev certs -out docker/compose/certs -days 7300`", f, c.NotAfter.Format(time.DateOnly))
		}
		n++
	}
	if n < 6 {
		t.Fatalf("found %d example certificates, want the CA and every leaf (docker/compose/certs/README)", n)
	}
}

// TestValidateMatchesRun: a config `meshgate run` refuses (auth on a
// declarative codec, missing certificate, key, CA and codec files) is
// refused by `meshgate validate` too, exit 1, with the same field-named
// errors run prints. (validate used to print OK for each of these.)
func TestValidateMatchesRun(t *testing.T) {
	bin := harness.MeshgateBin(t)
	dir := t.TempDir()
	le16, err := os.ReadFile(filepath.Join(harness.RepoRoot(), "examples", "codecs", "le16.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	harness.WriteFile(t, dir, "le16.yaml", le16)
	cases := map[string]struct{ yaml, want string }{
		"auth on le16": {`
codecs: [{name: le16, file: le16.yaml}]
listeners:
  - {name: a, kind: private, address: 127.0.0.1:0, codec: le16, auth: {keys: {1: k}}, routes: [{cmd: 1, method: /a.B/C, upstream: u}]}
upstreams: [{name: u, protocol: grpc, endpoints: ["127.0.0.1:1"]}]
`, `listeners[0].auth: HMAC auth needs codec mgp, not "le16"`},
		"missing listener cert": {`
listeners:
  - {name: a, kind: private, address: 127.0.0.1:0, tls: {cert_file: /nonexistent/c.pem, key_file: /nonexistent/k.pem}, routes: [{cmd: 1, method: /a.B/C, upstream: u}]}
upstreams: [{name: u, protocol: grpc, endpoints: ["127.0.0.1:1"]}]
`, `listeners[0].tls: `},
		"missing upstream CA": {`
listeners:
  - {name: a, kind: private, address: 127.0.0.1:0, routes: [{cmd: 1, method: /a.B/C, upstream: u}]}
upstreams: [{name: u, protocol: grpc, endpoints: ["127.0.0.1:1"], tls: {ca_file: /nonexistent/ca.pem}}]
`, `upstreams[0].tls: `},
		"missing codec file": {`
codecs: [{name: x, file: nonexistent.yaml}]
listeners:
  - {name: a, kind: private, address: 127.0.0.1:0, codec: x, routes: [{cmd: 1, method: /a.B/C, upstream: u}]}
upstreams: [{name: u, protocol: grpc, endpoints: ["127.0.0.1:1"]}]
`, `codecs[0]: `},
		"unknown field": {`
listeners:
  - {name: a, kind: private, address: 127.0.0.1:0, adress: x, routes: [{cmd: 1, method: /a.B/C, upstream: u}]}
upstreams: [{name: u, protocol: grpc, endpoints: ["127.0.0.1:1"]}]
`, `listeners[0].adress: unknown field (line 3)`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			p := harness.WriteFile(t, dir, strings.ReplaceAll(name, " ", "_")+".yaml", []byte("admin: {address: \"127.0.0.1:0\"}"+c.yaml))
			vout, verr := exec.Command(bin, "validate", "-c", p).Output()
			if code := exitCode(verr); code != 1 || !strings.Contains(string(vout), c.want) {
				t.Fatalf("validate: exit %d, output:\n%s\nwant exit 1 and %q", code, vout, c.want)
			}
			rout, rerr := exec.Command(bin, "run", "-c", p, "-log-level", "error").CombinedOutput()
			if code := exitCode(rerr); code != 1 {
				t.Fatalf("run: exit %d, output:\n%s", code, rout)
			}
			for _, line := range strings.Split(strings.TrimSpace(string(vout)), "\n") {
				if !strings.Contains(string(rout), line) {
					t.Errorf("run's error lacks validate's %q:\n%s", line, rout)
				}
			}
		})
	}
}

func exitCode(err error) int {
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}
