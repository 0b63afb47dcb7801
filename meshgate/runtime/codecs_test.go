package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec/fixed"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// TestDeclarativeCodecListener: a private listener speaking a codec/fixed
// protocol declared in the config (file and inline) bridges to gRPC.
func TestDeclarativeCodecListener(t *testing.T) {
	le16, err := os.ReadFile(filepath.Join("..", "..", "codec", "fixed", "testdata", "le16.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "le16.yaml"), le16, 0o600); err != nil {
		t.Fatal(err)
	}
	inline := "      " + strings.ReplaceAll(strings.TrimSpace(string(le16)), "\n", "\n      ")
	y := fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
codecs:
  - {name: le16-file, file: le16.yaml}
  - name: le16-inline
    spec:
%s
listeners:
  - name: file
    kind: private
    codec: le16-file
    address: 127.0.0.1:0
    routes: [{cmd: 7, method: /demo.Echo/Upper, upstream: demo}]
  - name: inline
    kind: private
    codec: le16-inline
    address: 127.0.0.1:0
    routes: [{cmd: 7, method: /demo.Echo/Upper, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, inline, backend(t, "A"))
	path := filepath.Join(dir, "meshgate.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, path)
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	rt := start(t, cfg)
	c, err := fixed.Parse(le16, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"file", "inline"} {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		cl, err := legacy.Dial(ctx, rt.Addr(name).String(), legacy.ClientOptions{Codec: c})
		if err != nil {
			cancel()
			t.Fatal(err)
		}
		r, err := cl.Call(ctx, 7, 9, []byte("le16 body"), nil)
		cancel()
		_ = cl.Close()
		if err != nil || r.Result != 0 || string(r.Body) != "LE16 BODY" {
			t.Fatalf("%s: %+v %v", name, r, err)
		}
	}
	// A broken declarative codec is rejected naming the field.
	bad := strings.Replace(y, "role: cmd", "role: nonsense", 1)
	if err := os.WriteFile(path, []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := rt.ReloadFile(path); err == nil || !strings.Contains(err.Error(), "codecs[1]") {
		t.Fatalf("bad codec reload: %v", err)
	}
}
