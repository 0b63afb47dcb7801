package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/meshgate/config"
)

// EchoCmd is the MGP command the legacy echo path uses end to end.
const EchoCmd = legacy.CmdEcho

// EchoMethod is the gRPC method MeshGate routes EchoCmd to (and from).
const EchoMethod = demo.MethodEcho

func addr(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// startServer starts a backend server (kind "legacy" or "grpc") as a
// subprocess of the tools binary (`meshgate-dev bench serve`) or in-process, registers its
// teardown on t and returns its address.
func (e *env) startServer(ctx context.Context, t *topology, kind string) (string, error) {
	if e.opts.InProcServers || e.opts.Binary == "" {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return "", err
		}
		sctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- Serve(sctx, kind, ln, e.log) }()
		t.closers = append(t.closers, func() error {
			cancel()
			select {
			case err := <-done:
				return err
			case <-time.After(10 * time.Second):
				return fmt.Errorf("bench: in-process %s server did not stop", kind)
			}
		})
		return ln.Addr().String(), nil
	}
	port, err := freePort()
	if err != nil {
		return "", err
	}
	a := addr(port)
	p, err := startSubproc(t.id+"-server-"+kind, e.dir, e.opts.Binary, "bench", "serve", "-kind", kind, "-listen", a)
	if err != nil {
		return "", err
	}
	t.closers = append(t.closers, p.stop)
	t.procs = append(t.procs, Proc{Role: RoleServer, PID: p.pid(), Note: kind})
	if err := waitTCP(ctx, a, p, 15*time.Second); err != nil {
		return "", err
	}
	return a, nil
}

// startMeshGate writes cfg (YAML, validated first), runs the product
// binary `meshgate run -c`
// and waits until wait accepts connections.
func (e *env) startMeshGate(ctx context.Context, t *topology, name, cfg, wait string) error {
	if _, err := config.Parse([]byte(cfg), e.dir); err != nil {
		return fmt.Errorf("bench: generated MeshGate config: %w", err)
	}
	path := filepath.Join(e.dir, t.id+"-"+name+".yaml")
	if err := os.WriteFile(path, []byte(cfg), 0o644); err != nil {
		return err
	}
	p, err := startSubproc(t.id+"-"+name, e.dir, e.opts.MeshGate, "run", "-c", path)
	if err != nil {
		return err
	}
	t.closers = append(t.closers, p.stop)
	t.procs = append(t.procs, Proc{Role: RoleMeshGate, PID: p.pid()})
	return waitTCP(ctx, wait, p, 20*time.Second)
}

// meshGatePrivToGRPC is the S3/S4 config: private listener, cmd EchoCmd
// to demo.Echo/Echo on the gRPC server.
func meshGatePrivToGRPC(admin, listen, grpcAddr string) string {
	return fmt.Sprintf(`admin: {address: "%s"}
listeners:
- name: private-in
  kind: private
  address: "%s"
  routes:
  - {cmd: %d, method: "%s", upstream: demo}
upstreams:
- name: demo
  protocol: grpc
  endpoints: ["%s"]
`, admin, listen, EchoCmd, EchoMethod, grpcAddr)
}

// meshGateGRPCToPriv is the S6 config: gRPC listener, demo.Echo/Echo to
// cmd EchoCmd on the legacy server.
func meshGateGRPCToPriv(admin, listen, legacyAddr string) string {
	return fmt.Sprintf(`admin: {address: "%s"}
listeners:
- name: grpc-in
  kind: grpc
  address: "%s"
  routes:
  - {method: "%s", cmd: %d, upstream: legacy}
upstreams:
- name: legacy
  protocol: private
  endpoints: ["%s"]
`, admin, listen, EchoMethod, EchoCmd, legacyAddr)
}

// ports returns n free loopback ports.
func ports(n int) ([]int, error) {
	out := make([]int, n)
	for i := range out {
		p, err := freePort()
		if err != nil {
			return nil, err
		}
		out[i] = p
	}
	return out, nil
}

func (e *env) legacyDial(a string) func(int) (Client, error) {
	return func(n int) (Client, error) { return DialLegacy(a, n) }
}

func (e *env) grpcDial(a string) func(int) (Client, error) {
	return func(n int) (Client, error) { return DialGRPC(a, EchoMethod, n) }
}

// guard tears the topology down when setup fails half-way.
func guard(t *topology, err *error) {
	if *err != nil {
		_ = t.close()
	}
}

func setupS0(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	a, err := e.startServer(ctx, t, "legacy")
	if err != nil {
		return nil, err
	}
	t.dial = e.legacyDial(a)
	return t, nil
}

func setupS1(wasm bool) func(context.Context, *env, *topology) (*topology, error) {
	return func(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
		defer guard(t, &err)
		a, err := e.startServer(ctx, t, "legacy")
		if err != nil {
			return nil, err
		}
		spec := EnvoySpec{Name: "envoy-a", UpstreamAddr: a}
		if wasm {
			spec.WasmFile, spec.WasmRootID, spec.WasmConfig = e.opts.Wasm, WasmRootID, WasmConfig
		}
		in, err := e.startEnvoy(ctx, t, RoleEnvoyA, spec)
		if err != nil {
			return nil, err
		}
		if wasm {
			cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			err := checkWasmOnPath(cctx, in, t.envoys[RoleEnvoyA])
			cancel()
			if err != nil {
				return nil, err
			}
			t.notes = append(t.notes, "S1w: the MGP proxy-wasm filter ("+filepath.Base(e.opts.Wasm)+", V8) sits before tcp_proxy; setup checks its counter "+WasmRequestsStat+" moves, so it is on the path")
		}
		t.dial = e.legacyDial(in)
		return t, nil
	}
}

// envoyPair starts the S2/S4 sidecar pair in front of upstream: envoy-a
// (the client's sidecar: plain listener, mTLS upstream) and envoy-b (the
// server's sidecar: mTLS listener requiring a client certificate, plain
// to upstream). It returns envoy-a's listener.
func (e *env) envoyPair(ctx context.Context, t *topology, upstream string) (string, error) {
	certs, err := e.certFiles()
	if err != nil {
		return "", err
	}
	b, err := e.startEnvoy(ctx, t, RoleEnvoyB, EnvoySpec{Name: "envoy-b", UpstreamAddr: upstream,
		DownstreamTLS: &EnvoyTLS{CertFile: certs.ServerCert, KeyFile: certs.ServerKey, CAFile: certs.CA}})
	if err != nil {
		return "", err
	}
	return e.startEnvoy(ctx, t, RoleEnvoyA, EnvoySpec{Name: "envoy-a", UpstreamAddr: b,
		UpstreamTLS: &EnvoyTLS{CertFile: certs.ClientCert, KeyFile: certs.ClientKey, CAFile: certs.CA, PeerSAN: certs.ServerName}})
}

func setupS2(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	a, err := e.startServer(ctx, t, "legacy")
	if err != nil {
		return nil, err
	}
	in, err := e.envoyPair(ctx, t, a)
	if err != nil {
		return nil, err
	}
	t.dial = e.legacyDial(in)
	return t, nil
}

// startBridge starts the gRPC server and MeshGate (private→gRPC) in front
// of it and returns MeshGate's private listener.
func (e *env) startBridge(ctx context.Context, t *topology) (string, error) {
	return e.startBridgeWith(ctx, t, "")
}

// startBridgeWith is startBridge with the upstream's grpc_transport ("":
// the default, grpc-go).
func (e *env) startBridgeWith(ctx context.Context, t *topology, transport string) (string, error) {
	g, err := e.startServer(ctx, t, "grpc")
	if err != nil {
		return "", err
	}
	ps, err := ports(2)
	if err != nil {
		return "", err
	}
	listen := addr(ps[1])
	cfg := meshGatePrivToGRPC(addr(ps[0]), listen, g)
	if transport != "" {
		cfg += "  grpc_transport: " + transport + "\n"
	}
	if err := e.startMeshGate(ctx, t, "meshgate-s3", cfg, listen); err != nil {
		return "", err
	}
	return listen, nil
}

func setupS3(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	in, err := e.startBridge(ctx, t)
	if err != nil {
		return nil, err
	}
	t.dial = e.legacyDial(in)
	return t, nil
}

// setupS3d is S3 with the upstream on MeshGate's direct HTTP/2 transport
// (grpc_transport: direct) instead of grpc-go's client.
func setupS3d(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	in, err := e.startBridgeWith(ctx, t, "direct")
	if err != nil {
		return nil, err
	}
	t.dial = e.legacyDial(in)
	return t, nil
}

// setupS4 places the Envoy pair where a migration puts it: the legacy
// client's sidecar (envoy-a, IDC side) originates mTLS to the sidecar of
// the MeshGate pod (envoy-b, cloud side), which hands the private stream
// to MeshGate on loopback; MeshGate calls the gRPC service directly.
func setupS4(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	mg, err := e.startBridge(ctx, t)
	if err != nil {
		return nil, err
	}
	in, err := e.envoyPair(ctx, t, mg)
	if err != nil {
		return nil, err
	}
	t.notes = append(t.notes, "S4 placement: legacy client → envoy-a (client sidecar) → mTLS → envoy-b (MeshGate's sidecar) → MeshGate (private→gRPC) → grpc-go service; the same pair as S2, so S4−S3 ≈ S2−S0 is the mesh cost")
	t.dial = e.legacyDial(in)
	return t, nil
}

func setupS5(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	g, err := e.startServer(ctx, t, "grpc")
	if err != nil {
		return nil, err
	}
	t.dial = e.grpcDial(g)
	return t, nil
}

func setupS6(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	l, err := e.startServer(ctx, t, "legacy")
	if err != nil {
		return nil, err
	}
	ps, err := ports(2)
	if err != nil {
		return nil, err
	}
	listen := addr(ps[1])
	if err := e.startMeshGate(ctx, t, "meshgate-s6", meshGateGRPCToPriv(addr(ps[0]), listen, l), listen); err != nil {
		return nil, err
	}
	t.dial = e.grpcDial(listen)
	return t, nil
}
