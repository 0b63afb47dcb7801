package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/fixed"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// TestGoRegisteredCodec: a codec registered from Go with codec.Register
// (here the le16 description, compiled) serves a private listener named
// by it in the config. Before, validation rejected it as "unknown codec".
func TestGoRegisteredCodec(t *testing.T) {
	le16, err := os.ReadFile(filepath.Join("..", "..", "codec", "fixed", "testdata", "le16.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := fixed.Parse(le16, 0)
	if err != nil {
		t.Fatal(err)
	}
	codec.Register("le16-go", func(max int) (codec.Codec, error) { return c.With("le16-go", max), nil })
	dir := t.TempDir()
	path := filepath.Join(dir, "meshgate.yaml")
	y := fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: go
    kind: private
    codec: le16-go
    address: 127.0.0.1:0
    routes: [{cmd: 7, method: /demo.Echo/Upper, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, backend(t, "A"))
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, path)
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	rt := start(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cl, err := legacy.Dial(ctx, rt.Addr("go").String(), legacy.ClientOptions{Codec: c})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	if r, err := cl.Call(ctx, 7, 9, []byte("go codec"), nil); err != nil || r.Result != 0 || string(r.Body) != "GO CODEC" {
		t.Fatalf("%+v %v", r, err)
	}
}
