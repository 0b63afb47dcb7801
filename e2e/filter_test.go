package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/envoyproc"
	"github.com/meshgate/meshgate/internal/sim/legacy"
)

// filterBootstrap is a static Envoy config: one listener whose network
// filter chain is the MGP proxy-wasm filter, then tcp_proxy to the legacy
// server.
// The listener is on port 0 (harness.EnvoyListener reads it back).
func filterBootstrap(upstream, wasmFile, pluginJSON string) string {
	host, port, _ := net.SplitHostPort(upstream)
	return fmt.Sprintf(`
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: 0}}
static_resources:
  listeners:
  - name: mgp
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.wasm
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.wasm.v3.Wasm
          config:
            name: mgp
            root_id: mgp
            configuration:
              "@type": type.googleapis.com/google.protobuf.StringValue
              value: '%s'
            vm_config:
              runtime: envoy.wasm.runtime.v8
              code: {local: {filename: %q}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: mgp
          cluster: legacy
  clusters:
  - name: legacy
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: legacy
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: %s, port_value: %s}}}
`, pluginJSON, wasmFile, host, port)
}

// TestWasmFilterInEnvoy loads the built .wasm into a real Envoy as a network
// filter before tcp_proxy: MGP traffic flows, /stats has the per-cmd
// counters and latency histogram, a denied cmd is answered with result 4
// and never reaches the server, and a malformed frame closes only its own
// connection.
func TestWasmFilterInEnvoy(t *testing.T) {
	envoyproc.Require(t)
	wasm := harness.WasmFilter(t)
	var got66 atomic.Int64
	ls := legacy.NewServer(legacy.ServerOptions{OnRequest: func(f *codec.Frame) {
		if f.Cmd == 66 {
			got66.Add(1)
		}
	}})
	if err := ls.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ls.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env := envoyproc.StartT(t, ctx, envoyproc.Options{
		Bootstrap:    []byte(filterBootstrap(ls.Addr().String(), wasm, `{"deny_cmds": [66], "max_frame_size": 65536}`)),
		ReadyTimeout: 60 * time.Second, // the first V8 compile of the module is slow
	})
	addr := harness.EnvoyListener(t, env, "mgp")

	c := harness.DialLegacy(t, addr, legacy.ClientOptions{Conns: 2})
	const n = 200
	for i := 0; i < n; i++ {
		body := []byte(fmt.Sprintf("req-%d", i))
		resp, err := c.Call(ctx, 1, uint64(i), body, nil)
		if err != nil || resp.Result != 0 || string(resp.Body) != string(body) {
			t.Fatalf("call %d: %+v %v", i, resp, err)
		}
	}
	// Application error results are counted by result code.
	if resp, err := c.Call(ctx, 99, 1, nil, nil); err != nil || resp.Result != codec.ResultUnknownCommand {
		t.Fatalf("cmd 99: %+v %v", resp, err)
	}
	// Denied: result 4 from the filter; the server never sees cmd 66.
	resp, err := c.Call(ctx, 66, 7, []byte("secret"), nil)
	if err != nil || resp.Result != codec.ResultForbidden || resp.Cmd != 66 || resp.UIN != 7 {
		t.Fatalf("denied cmd: %+v %v", resp, err)
	}
	if got66.Load() != 0 {
		t.Fatal("denied request reached the server")
	}
	// The connection that carried the denied request keeps working.
	if resp, err := c.Call(ctx, 1, 1, []byte("after"), nil); err != nil || string(resp.Body) != "after" {
		t.Fatalf("after deny: %+v %v", resp, err)
	}

	// A malformed frame closes its own connection only.
	expectClosed(t, addr, []byte{0x02, 0x01, 0x00, 0x21, 0, 0, 0, 0}) // header_len 33
	if resp, err := c.Call(ctx, 1, 2, []byte("still"), nil); err != nil || string(resp.Body) != "still" {
		t.Fatalf("other connection after malformed: %+v %v", resp, err)
	}
	// An oversized frame (over the plugin's 64 KiB limit) is cut from its header.
	enc := mgp.New(1 << 20)
	frame, _ := enc.Append(nil, &codec.Frame{Cmd: 1, Seq: 1, Body: make([]byte, 100<<10)})
	expectClosed(t, addr, frame[:64])

	expectFilterStats(t, env, map[string]uint64{
		"wasmcustom.mgp.cmd.1.requests":            n + 2,
		"wasmcustom.mgp.cmd.1.responses.result.0":  n + 2,
		"wasmcustom.mgp.cmd.99.responses.result.1": 1,
		"wasmcustom.mgp.cmd.66.denied":             1,
		"wasmcustom.mgp.cmd.66.responses.result.4": 1,
		"wasmcustom.mgp.malformed":                 2,
	}, 1)
	if ls.Stats().Malformed != 0 {
		t.Fatal("malformed bytes reached the server")
	}
}

// expectClosed writes raw bytes on a fresh connection to addr and waits for
// Envoy to close it (the filter cuts a malformed or oversized stream).
func expectClosed(t *testing.T, addr string, raw []byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	if _, err := nc.Write(raw); err != nil {
		t.Fatal(err)
	}
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.ReadAll(nc); err != nil {
		t.Fatalf("connection not closed by Envoy after %x: %v", raw, err)
	}
}

// expectFilterStats waits until Envoy's /stats has the filter counters in
// want and a non-empty latency histogram for cmd.
func expectFilterStats(t *testing.T, env *envoyproc.Envoy, want map[string]uint64, cmd uint32) {
	t.Helper()
	hist := fmt.Sprintf("wasmcustom.mgp.cmd.%d.latency_us", cmd)
	harness.Eventually(t, 10*time.Second, "filter stats in /stats", func() error {
		st, err := env.Stats()
		if err != nil {
			return err
		}
		for name, v := range want {
			if st[name] != v {
				return fmt.Errorf("%s = %d, want %d", name, st[name], v)
			}
		}
		h, err := env.AdminGet("/stats?filter=latency_us")
		if err != nil {
			return err
		}
		if s := string(h); !strings.Contains(s, hist) || strings.Contains(s, hist+": No recorded values") {
			return fmt.Errorf("latency histogram missing or empty:\n%s", h)
		}
		return nil
	})
}
