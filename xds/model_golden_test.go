package xds

import (
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/envoyproxy/go-control-plane/pkg/cache/types"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"

	"github.com/meshgate/meshgate/xds/model"
)

// TestModelGolden translates every testdata/model/*.in.yaml (one model
// per feature, the files given recognisable contents) and compares the
// resources of each node with the matching .out.yaml. Regenerate with
// `go test ./xds -run ModelGolden -update` and review the diff.
func TestModelGolden(t *testing.T) {
	ins, err := filepath.Glob(filepath.Join("testdata", "model", "*.in.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(ins) < 6 {
		t.Fatalf("only %d golden inputs", len(ins))
	}
	for _, in := range ins {
		name := strings.TrimSuffix(filepath.Base(in), ".in.yaml")
		t.Run(name, func(t *testing.T) {
			m := readModel(t, in)
			files := Files{}
			for _, p := range CertFiles(m) {
				files[p] = []byte("PEM of " + p)
			}
			res, err := Translate(m, files)
			if err != nil {
				t.Fatal(err)
			}
			got := renderResources(t, res)
			checkGolden(t, strings.TrimSuffix(in, ".in.yaml")+".out.yaml", got, "ModelGolden")
		})
	}
}

// readModel decodes a model from YAML, rejecting unknown fields.
func readModel(t *testing.T, path string) *model.XDS {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	dec := yaml.NewDecoder(f)
	dec.KnownFields(true)
	var m model.XDS
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return &m
}

// renderResources renders every node's resources as YAML: node → type →
// resources in translation order (each as its proto JSON).
func renderResources(t *testing.T, res map[string]*Resources) []byte {
	t.Helper()
	doc := map[string]any{}
	for _, n := range slices.Sorted(maps.Keys(res)) {
		r := res[n]
		byType := map[string]any{}
		for _, c := range []struct {
			name string
			rs   []types.Resource
		}{{"listeners", r.Listeners}, {"routes", r.Routes}, {"clusters", r.Clusters}, {"endpoints", r.Endpoints}, {"secrets", r.Secrets}} {
			if len(c.rs) == 0 {
				continue
			}
			var list []any
			for _, x := range c.rs {
				js, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(x)
				if err != nil {
					t.Fatal(err)
				}
				var v any
				if err := json.Unmarshal(js, &v); err != nil {
					t.Fatal(err)
				}
				list = append(list, v)
			}
			byType[c.name] = list
		}
		doc[n] = byType
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	y, err := jsonToYAML(js)
	if err != nil {
		t.Fatal(err)
	}
	return y
}

// TestTranslateRejectsBadModel: a hand-built model with a value the
// translator does not know is refused with an error naming the node and
// the listener or cluster, not translated into something else.
func TestTranslateRejectsBadModel(t *testing.T) {
	base := func() *model.XDS { return readModel(t, filepath.Join("testdata", "model", "tcp_proxy.in.yaml")) }
	for _, c := range []struct {
		name, want string
		edit       func(*model.XDS)
	}{
		{"listener protocol", `node idc: listener idc_private: unknown protocol "udp"`, func(m *model.XDS) { m.Nodes[0].Listeners[0].Protocol = "udp" }},
		{"cluster protocol", `node idc: cluster cloud_private: unknown protocol "http1"`, func(m *model.XDS) { m.Nodes[0].Clusters[0].Protocol = "http1" }},
		{"lb policy", `node idc: cluster cloud_private: unknown load-balancing policy "random"`, func(m *model.XDS) { m.Nodes[0].Clusters[0].LB = "random" }},
		{"unknown cluster", `node idc: listener idc_private: unknown cluster "nope"`, func(m *model.XDS) { m.Nodes[0].Listeners[0].Cluster = "nope" }},
		{"unknown route cluster", `listener idc_private: unknown cluster "nope"`, func(m *model.XDS) {
			l := &m.Nodes[0].Listeners[0]
			l.Protocol, l.Routes = model.GRPC, []model.Route{{PathPrefix: "/", Cluster: "cloud_private"}, {PathPrefix: "/", Cluster: "nope"}}
		}},
		{"wasm on grpc", "listener idc_private: the wasm network filter needs a tcp listener", func(m *model.XDS) {
			l := &m.Nodes[0].Listeners[0]
			l.Protocol, l.Wasm = model.GRPC, &model.Wasm{Name: "w", File: "/w", Config: "{}"}
		}},
	} {
		m := base()
		c.edit(m)
		if _, err := Translate(m, Files{}); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err = %v, want %q", c.name, err, c.want)
		}
	}
}
