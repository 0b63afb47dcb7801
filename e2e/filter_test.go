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
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testkit/xdstest"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds"
)

// filterBootstrap is a static Envoy config: one listener whose network
// filter chain is the MGP proxy-wasm filter, then tcp_proxy to the legacy
// server.
// The listener is on port 0 (envoyListener reads it back).
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
	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(f *codec.Frame) {
		if f.Cmd == 66 {
			got66.Add(1)
		}
	}})
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env := envoyproc.StartT(t, ctx, envoyproc.Options{
		Bootstrap:    []byte(filterBootstrap(ls.Addr().String(), wasm, `{"deny_cmds": [66], "max_frame_size": 65536}`)),
		ReadyTimeout: 60 * time.Second, // the first V8 compile of the module is slow
	})
	addr := envoyListener(t, env, "mgp")

	c := testkit.LegacyClient(t, addr, legacy.ClientOptions{Conns: 2})
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

// filterXDSConfig is a MeshGate config whose only job is the control
// plane: one Envoy node with a private listener that carries the MGP wasm
// filter (plugin config from wasm.config) and tcp_proxies to a cluster of
// the legacy server.
//
// ADS is mutual TLS: the control plane serves pki's xds certificate and
// the node proves its id with client (default identity dns:filter).
func filterXDSConfig(t *testing.T, xdsAddr string, listen int, wasm, legacyAddr string, deny uint32, pki *xdstest.PKI, client testpki.TLSFiles) *config.Config {
	t.Helper()
	y := fmt.Sprintf(`
xds:
  address: %s
  %s
  envoy:
  - node: filter
    admin_address: 127.0.0.1:0
    xds_tls: %s
    listeners:
    - name: mgp_in
      address: 127.0.0.1:%d
      protocol: private
      wasm: {file: %q, config: {deny_cmds: [%d], max_frame_size: 65536, on_malformed: close}}
      route_to: {cluster: legacy}
    clusters:
    - {name: legacy, protocol: private, endpoints: [%q]}
`, xdsAddr, serverYAML(pki), client.YAML(), listen, wasm, deny, legacyAddr)
	cfg, err := config.Parse([]byte(y), t.TempDir())
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	return cfg
}

// TestWasmFilterThroughXDS loads the MGP filter into a real Envoy through
// MeshGate's own control plane (xds.Server + xds.Bootstrap, the code
// `meshgate run` and `meshgate envoy-bootstrap` use): traffic flows,
// per-cmd stats and the latency histogram appear in /stats, the denied
// cmd is answered with result 4 without reaching the server, a malformed
// frame closes only its connection, and a pushed config change (a new
// deny list) takes effect on new connections.
func TestWasmFilterThroughXDS(t *testing.T) {
	envoyproc.Require(t)
	wasm := harness.WasmFilter(t)
	var seen [128]atomic.Int64
	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(f *codec.Frame) {
		if f.Cmd < uint32(len(seen)) {
			seen[f.Cmd].Add(1)
		}
	}})

	// Envoy's listener comes from xDS, which needs a concrete port; the
	// control plane listens on port 0.
	port := harness.FreePort(t)
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	pki := xdstest.NewPKI(t, t.TempDir(), nil)
	client := pki.Client(t, "filter")

	xs := xds.NewServer(xds.Options{Logger: newSlog(t, "xds")})
	if err := xs.Update(xdstest.Model(t, filterXDSConfig(t, "127.0.0.1:0", port, wasm, ls.Addr().String(), 66, pki, client))); err != nil {
		t.Fatal(err)
	}
	bound, err := xs.Listen()
	if err != nil {
		t.Fatal(err)
	}
	xdsAddr := bound.String()
	cfg := filterXDSConfig(t, xdsAddr, port, wasm, ls.Addr().String(), 66, pki, client)
	served := make(chan error, 1)
	go func() { served <- xs.Serve(context.Background()) }()
	t.Cleanup(func() {
		xs.Close()
		select {
		case <-served:
		case <-time.After(10 * time.Second):
			t.Error("xds server did not stop")
		}
	})

	boot, err := xds.Bootstrap(xdstest.Model(t, cfg), "filter", xds.BootstrapOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	env := envoyproc.StartT(t, ctx, envoyproc.Options{Bootstrap: boot, ReadyTimeout: 60 * time.Second})

	c := dialMGPWhenReady(t, addr, 1, "warm", "MGP call through the xDS-configured filter")
	const n = 50
	for i := 0; i < n; i++ {
		body := []byte(fmt.Sprintf("x-%d", i))
		if resp, err := c.Call(ctx, 1, uint64(i), body, nil); err != nil || string(resp.Body) != string(body) {
			t.Fatalf("call %d: %+v %v", i, resp, err)
		}
	}
	resp, err := c.Call(ctx, 66, 5, []byte("secret"), nil)
	if err != nil || resp.Result != codec.ResultForbidden || resp.Cmd != 66 || resp.UIN != 5 {
		t.Fatalf("denied cmd: %+v %v", resp, err)
	}
	if seen[66].Load() != 0 {
		t.Fatal("denied request reached the server")
	}

	// Malformed: that connection closes, the client's keeps working.
	expectClosed(t, addr, []byte{0x03, 0x01, 0x00, 0x20, 0, 0, 0, 0}) // bad stx
	if resp, err := c.Call(ctx, 1, 2, []byte("still"), nil); err != nil || string(resp.Body) != "still" {
		t.Fatalf("other connection after malformed: %+v %v", resp, err)
	}

	expectFilterStats(t, env, map[string]uint64{
		"wasmcustom.mgp.cmd.1.requests":            n + 2,
		"wasmcustom.mgp.cmd.1.responses.result.0":  n + 2,
		"wasmcustom.mgp.cmd.66.denied":             1,
		"wasmcustom.mgp.cmd.66.responses.result.4": 1,
		"wasmcustom.mgp.malformed":                 1,
	}, 1)

	// Push a new plugin config (deny 67 instead of 66): new connections
	// get it once Envoy has swapped the listener.
	if err := xs.Update(xdstest.Model(t, filterXDSConfig(t, xdsAddr, port, wasm, ls.Addr().String(), 67, pki, client))); err != nil {
		t.Fatal(err)
	}
	harness.Eventually(t, 30*time.Second, "pushed deny list in force on a new connection", func() error {
		cctx, ccancel := context.WithTimeout(ctx, 2*time.Second)
		defer ccancel()
		cl, err := legacy.Dial(cctx, addr, legacy.ClientOptions{})
		if err != nil {
			return err
		}
		defer cl.Close()
		r67, err := cl.Call(cctx, 67, 1, []byte("now-denied"), nil)
		if err != nil {
			return err
		}
		if r67.Result != codec.ResultForbidden {
			return fmt.Errorf("cmd 67 result %d, want 4", r67.Result)
		}
		// 66 is allowed now: the legacy server answers it (unknown command).
		r66, err := cl.Call(cctx, 66, 1, []byte("now-allowed"), nil)
		if err != nil {
			return err
		}
		if r66.Result == codec.ResultForbidden {
			return fmt.Errorf("cmd 66 still forbidden after the push")
		}
		return nil
	})
	// Before the swap, 67 may still have passed; from now on it must not.
	before := seen[67].Load()
	c2 := testkit.LegacyClient(t, addr, legacy.ClientOptions{})
	if r, err := c2.Call(ctx, 67, 2, []byte("denied"), nil); err != nil || r.Result != codec.ResultForbidden {
		t.Fatalf("cmd 67 after the push: %+v %v", r, err)
	}
	if seen[67].Load() != before {
		t.Fatal("cmd 67 reached the server after it was denied")
	}
	if err := dumpContains(env, `"envoy.filters.network.wasm"`, `deny_cmds`, `[67]`); err != nil {
		t.Fatal(err)
	}
}
