package xds

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds/model"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden")

// loadTestModel loads testdata/name and builds its model.
func loadTestModel(t *testing.T, name string) *model.XDS {
	t.Helper()
	cfg, err := config.Load(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return xdstest.Model(t, cfg)
}

// fakeFiles gives every referenced certificate file a recognisable body.
func fakeFiles(m *model.XDS) Files {
	f := Files{}
	for _, p := range CertFiles(m) {
		f[p] = []byte("PEM of " + filepath.Base(p))
	}
	return f
}

func resourcesJSON(t *testing.T, rs []types.Resource) []json.RawMessage {
	t.Helper()
	out := make([]json.RawMessage, 0, len(rs))
	for _, r := range rs {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b)
	}
	return out
}

// golden compares got with testdata/name.golden (rewrites it with -update).
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	checkGolden(t, filepath.Join("testdata", name+".golden"), got, "Golden")
}

// checkGolden compares got with the file at path, or rewrites the file
// with -update; run names the tests that regenerate it.
func checkGolden(t *testing.T, path string, got []byte, run string) {
	t.Helper()
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./xds -run %s -update)", err, run)
	}
	if !bytes.Equal(want, got) {
		t.Errorf("%s differs; run `go test ./xds -run %s -update` and review the diff\n--- got ---\n%s", path, run, got)
	}
}

func indentJSON(t *testing.T, v any) []byte {
	t.Helper()
	raw, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, raw, "", "  "); err != nil {
		t.Fatal(err)
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

func TestTranslateGolden(t *testing.T) {
	m := loadTestModel(t, "bridge.yaml")
	res, err := Translate(m, fakeFiles(m))
	if err != nil {
		t.Fatal(err)
	}
	for _, node := range []string{"idc", "cloud", ProxylessNode} {
		r := res[node]
		if r == nil {
			t.Fatalf("no resources for %s", node)
		}
		doc := map[string]any{
			"listeners": resourcesJSON(t, r.Listeners),
			"routes":    resourcesJSON(t, r.Routes),
			"clusters":  resourcesJSON(t, r.Clusters),
			"endpoints": resourcesJSON(t, r.Endpoints),
			"secrets":   resourcesJSON(t, r.Secrets),
		}
		golden(t, "translate_"+strings.TrimPrefix(node, "_"), indentJSON(t, doc))
	}
	if len(res) != 3 {
		t.Fatalf("nodes %d", len(res))
	}
}

func TestTranslateIsPure(t *testing.T) {
	m := loadTestModel(t, "bridge.yaml")
	files := fakeFiles(m)
	a, err := Translate(m, files)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := Translate(m, files)
	ja := indentJSON(t, resourcesJSON(t, a["idc"].Clusters))
	jb := indentJSON(t, resourcesJSON(t, b["idc"].Clusters))
	if !bytes.Equal(ja, jb) {
		t.Fatal("same input, different output")
	}
	// Rotated certificate content changes only the secrets.
	files2 := Files{}
	for k, v := range files {
		files2[k] = append([]byte("rotated "), v...)
	}
	c, _ := Translate(m, files2)
	if !bytes.Equal(indentJSON(t, resourcesJSON(t, c["idc"].Listeners)), indentJSON(t, resourcesJSON(t, a["idc"].Listeners))) {
		t.Fatal("rotation changed listeners")
	}
	if bytes.Equal(indentJSON(t, resourcesJSON(t, c["idc"].Secrets)), indentJSON(t, resourcesJSON(t, a["idc"].Secrets))) {
		t.Fatal("rotation did not change secrets")
	}
}

func TestTranslateMissingFile(t *testing.T) {
	m := loadTestModel(t, "bridge.yaml")
	files := fakeFiles(m)
	delete(files, m.Nodes[0].Clusters[0].TLS.Validation.CAFile)
	if _, err := Translate(m, files); !errors.Is(err, ErrMissingFile) {
		t.Fatalf("err = %v, want ErrMissingFile", err)
	}
}

func TestBootstrapGolden(t *testing.T) {
	m := loadTestModel(t, "bridge.yaml")
	b, err := Bootstrap(m, "idc", BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bootstrap_idc.yaml", b)
	d, err := Bootstrap(m, "cloud", BootstrapOptions{Delta: true, XDSAddress: "127.0.0.1:18000", AdminAddress: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bootstrap_cloud_delta.yaml", d)
	if _, err := Bootstrap(m, "nope", BootstrapOptions{}); err == nil {
		t.Fatal("unknown node accepted")
	}
}

func TestValidationNamesFields(t *testing.T) {
	base, err := os.ReadFile(filepath.Join("testdata", "bridge.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct{ from, to, field string }{
		{"cert_file: certs/cloud.pem, key_file", "key_file", "xds.envoy[1].listeners[0].tls.cert_file"},
		{"route_to: {cluster: cloud_grpc}", "route_to: {cluster: nope}", "xds.envoy[0].listeners[1].route_to.cluster"},
		{"route_to: {cluster: cloud_private}", "route_to: {cluster: cloud_grpc}", "xds.envoy[0].listeners[0].route_to.cluster"},
		{"protocol: grpc\n      route_to: {cluster: cloud_grpc}", "protocol: http\n      route_to: {cluster: cloud_grpc}", "xds.envoy[0].listeners[1].protocol"},
		{"endpoints: [127.0.0.1:10100]", "endpoints: [127.0.0.1]", "xds.envoy[0].clusters[0].endpoints[0]"},
		{"- node: cloud", "- node: idc", "xds.envoy[1].node"},
		{"{meshgate_listener: private_in}", "{meshgate_listener: grpc_in}", "xds.envoy[1].listeners[0].route_to.meshgate_listener"},
		{"wasm: {file: mgp_filter.wasm,", "wasm: {file: '',", "xds.envoy[0].listeners[0].wasm.file"},
		{"- name: direct\n    endpoints: [127.0.0.1:7101]", "- name: direct", "xds.grpc_clients[1]"},
	}
	for _, c := range cases {
		y := strings.Replace(string(base), c.from, c.to, 1)
		if y == string(base) {
			t.Fatalf("case %q did not apply", c.field)
		}
		_, err := config.Parse([]byte(y), "testdata")
		if err == nil || !strings.Contains(err.Error(), c.field+":") {
			t.Errorf("%s: got %v", c.field, err)
		}
	}
}

// TestBridgeModelGolden: the model the builder makes of bridge.yaml, as
// YAML (testdata/bridge.model.yaml), is what TestTranslateGolden
// translates; read back, it translates to the same resources, so the
// model files of testdata/model/ mean what the builder means.
func TestBridgeModelGolden(t *testing.T) {
	m := loadTestModel(t, "bridge.yaml")
	y, err := yaml.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	golden(t, "bridge.model.yaml", y)
	back := readModel(t, filepath.Join("testdata", "bridge.model.yaml.golden"))
	if !reflect.DeepEqual(back, m) {
		t.Fatalf("model read back differs:\n%+v\n%+v", back, m)
	}
}
