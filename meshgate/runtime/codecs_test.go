package runtime

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/fixed"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// le16 is codec/fixed's le16 description (testdata) and its codec.
func le16(t *testing.T) ([]byte, *fixed.Codec) {
	t.Helper()
	spec, err := os.ReadFile(filepath.Join("..", "..", "codec", "fixed", "testdata", "le16.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := fixed.Parse(spec, 0)
	if err != nil {
		t.Fatal(err)
	}
	return spec, c
}

// startFile writes y to dir/meshgate.yaml, loads and checks it, and starts
// a runtime on it; it returns the runtime and the file's path.
func startFile(t *testing.T, dir, y string) (*Runtime, string) {
	t.Helper()
	path := filepath.Join(dir, "meshgate.yaml")
	if err := os.WriteFile(path, []byte(y), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := mustLoad(t, path)
	if err := Check(cfg); err != nil {
		t.Fatal(err)
	}
	return start(t, cfg), path
}

// codecConfig is a config with the given codecs section and one private
// listener per name, speaking codec le16-<name>, routing cmd 7 to
// /demo.Echo/Upper of a demo backend.
func codecConfig(t *testing.T, codecs string, names ...string) string {
	var b strings.Builder
	b.WriteString("admin: {address: \"127.0.0.1:0\"}\n" + codecs + "listeners:\n")
	for _, n := range names {
		fmt.Fprintf(&b, "  - {name: %s, kind: private, codec: le16-%s, address: 127.0.0.1:0, routes: [{cmd: 7, method: /demo.Echo/Upper, upstream: demo}]}\n", n, n)
	}
	fmt.Fprintf(&b, "upstreams:\n  - {name: demo, protocol: grpc, endpoints: [%q]}\n", backend(t, "A"))
	return b.String()
}

// upperCall sends body on cmd 7 to addr with codec c and wants it back in
// upper case (the routes below go to /demo.Echo/Upper).
func upperCall(addr string, c codec.Codec, body string) error {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	cl, err := legacy.Dial(ctx, addr, legacy.ClientOptions{Codec: c})
	if err != nil {
		return err
	}
	defer cl.Close()
	r, err := cl.Call(ctx, 7, 9, []byte(body), nil)
	if err != nil {
		return err
	}
	if r.Result != 0 || string(r.Body) != strings.ToUpper(body) {
		return fmt.Errorf("reply %+v", r)
	}
	return nil
}

// TestDeclarativeCodecListener: a private listener speaking a codec/fixed
// protocol declared in the config (file and inline) bridges to gRPC.
func TestDeclarativeCodecListener(t *testing.T) {
	spec, c := le16(t)
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "le16.yaml"), spec, 0o600); err != nil {
		t.Fatal(err)
	}
	inline := "      " + strings.ReplaceAll(strings.TrimSpace(string(spec)), "\n", "\n      ")
	y := codecConfig(t, "codecs:\n  - {name: le16-file, file: le16.yaml}\n  - name: le16-inline\n    spec:\n"+inline+"\n", "file", "inline")
	rt, path := startFile(t, dir, y)
	for _, name := range []string{"file", "inline"} {
		if err := upperCall(rt.Addr(name).String(), c, "le16 body"); err != nil {
			t.Fatalf("%s: %v", name, err)
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

// TestGoRegisteredCodec: a codec registered from Go with codec.Register
// (here the le16 description, compiled) serves a private listener named
// by it in the config. Before, validation rejected it as "unknown codec".
func TestGoRegisteredCodec(t *testing.T) {
	_, c := le16(t)
	codec.Register("le16-go", func(max int) (codec.Codec, error) { return c.With("le16-go", max), nil })
	rt, _ := startFile(t, t.TempDir(), codecConfig(t, "", "go"))
	if err := upperCall(rt.Addr("go").String(), c, "go codec"); err != nil {
		t.Fatal(err)
	}
}
