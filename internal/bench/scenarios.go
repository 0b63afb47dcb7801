package bench

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	path, err := e.writeConfig(t, name, cfg)
	if err != nil {
		return err
	}
	return e.runMeshGate(ctx, t, name, path, wait)
}

// writeConfig writes cfg where t's MeshGate named name reads it.
func (e *env) writeConfig(t *topology, name, cfg string) (string, error) {
	path := filepath.Join(e.dir, t.id+"-"+name+".yaml")
	return path, os.WriteFile(path, []byte(cfg), 0o644)
}

// runMeshGate runs the product binary `meshgate run -c path` as t's
// MeshGate and waits until wait accepts connections.
func (e *env) runMeshGate(ctx context.Context, t *topology, name, path, wait string) error {
	p, err := startSubproc(t.id+"-"+name, e.dir, e.opts.MeshGate, "run", "-c", path)
	if err != nil {
		return err
	}
	t.closers = append(t.closers, p.stop)
	t.procs = append(t.procs, Proc{Role: RoleMeshGate, PID: p.pid()})
	return waitTCP(ctx, wait, p, 20*time.Second)
}

// startMeshGateAt picks MeshGate's admin and listen addresses and starts
// it with cfg(admin, listen). With lacks set the product validates the
// config first and a rejection skips the scenario (lacks names what the
// product then lacks); without, this tree's config package checks it.
func (e *env) startMeshGateAt(ctx context.Context, t *topology, name string, cfg func(admin, listen string) string, lacks string) (admin, listen string, err error) {
	ps, err := ports(2)
	if err != nil {
		return "", "", err
	}
	admin, listen = addr(ps[0]), addr(ps[1])
	if lacks != "" {
		err = e.startMeshGateValidated(ctx, t, name, cfg(admin, listen), listen, lacks)
	} else {
		err = e.startMeshGate(ctx, t, name, cfg(admin, listen), listen)
	}
	return admin, listen, err
}

// echoConfig is the one-route MeshGate config of the bench scenarios: a
// listener of kind (private or grpc) on listen routes the echo (EchoCmd
// on a private listener, EchoMethod on a gRPC one) to the upstream at
// upAddr speaking proto: "legacy" (private, cmd EchoCmd) or "demo" (grpc,
// EchoMethod). shadowAddr, when set, adds a 100 % shadow to a second
// upstream of the same protocol ("<upstream>-shadow").
func echoConfig(admin, listen, kind, proto, upAddr, shadowAddr string) string {
	up, target := "demo", fmt.Sprintf("method: %q", EchoMethod)
	if proto == config.ProtoPrivate {
		up, target = "legacy", fmt.Sprintf("cmd: %d", EchoCmd)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "admin: {address: %q}\nlisteners:\n- name: %s-in\n  kind: %s\n  address: %q\n  routes:\n", admin, kind, kind, listen)
	if kind == config.KindPrivate {
		fmt.Fprintf(&b, "  - cmd: %d\n", EchoCmd)
	} else {
		fmt.Fprintf(&b, "  - method: %q\n", EchoMethod)
	}
	if (kind == config.KindPrivate) != (proto == config.ProtoPrivate) { // converting: name the other side
		fmt.Fprintf(&b, "    %s\n", target)
	}
	fmt.Fprintf(&b, "    upstream: %s\n", up)
	if shadowAddr != "" {
		fmt.Fprintf(&b, "    shadow: {upstream: %s-shadow, %s, percent: 100}\n", up, target)
	}
	b.WriteString("upstreams:\n")
	fmt.Fprintf(&b, "- name: %s\n  protocol: %s\n  endpoints: [%q]\n", up, proto, upAddr)
	if shadowAddr != "" {
		fmt.Fprintf(&b, "- name: %s-shadow\n  protocol: %s\n  endpoints: [%q]\n", up, proto, shadowAddr)
	}
	return b.String()
}

// meshGatePrivToGRPC is the S3/S4 config: private listener, cmd EchoCmd
// to demo.Echo/Echo on the gRPC server.
func meshGatePrivToGRPC(admin, listen, grpcAddr string) string {
	return echoConfig(admin, listen, config.KindPrivate, config.ProtoGRPC, grpcAddr, "")
}

// meshGatePrivToGRPCGo is the S3g config: S3's with the upstream on
// grpc_transport: grpc-go (grpc-go's client, the opt-out from the default
// direct transport).
func meshGatePrivToGRPCGo(admin, listen, grpcAddr string) string {
	return meshGatePrivToGRPC(admin, listen, grpcAddr) + "  grpc_transport: grpc-go\n"
}

// meshGateGRPCToPriv is the S6 config: gRPC listener, demo.Echo/Echo to
// cmd EchoCmd on the legacy server.
func meshGateGRPCToPriv(admin, listen, legacyAddr string) string {
	return echoConfig(admin, listen, config.KindGRPC, config.ProtoPrivate, legacyAddr, "")
}

// meshGateGRPCToPrivGRPCGo is the S6g config: S6's with the listener on
// grpc_transport: grpc-go (grpc-go's server, the opt-out).
func meshGateGRPCToPrivGRPCGo(admin, listen, legacyAddr string) string {
	return strings.Replace(meshGateGRPCToPriv(admin, listen, legacyAddr), "  routes:\n", "  grpc_transport: grpc-go\n  routes:\n", 1)
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

// setupDirect: the client (dial) calls a backend of kind directly.
func setupDirect(kind string, dial func(e *env, a string) func(int) (Client, error)) func(context.Context, *env, *topology) (*topology, error) {
	return func(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
		defer guard(t, &err)
		a, err := e.startServer(ctx, t, kind)
		if err != nil {
			return nil, err
		}
		t.dial = dial(e, a)
		return t, nil
	}
}

// setupBridge: the client (dial) calls MeshGate (name, cfg(admin, listen,
// backend); lacks as for startMeshGateAt) in front of a backend of kind.
func setupBridge(kind, name string, cfg func(admin, listen, backend string) string, lacks string, dial func(e *env, a string) func(int) (Client, error)) func(context.Context, *env, *topology) (*topology, error) {
	return func(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
		defer guard(t, &err)
		in, err := e.startBridge(ctx, t, kind, name, cfg, lacks)
		if err != nil {
			return nil, err
		}
		t.dial = dial(e, in)
		return t, nil
	}
}

// startBridge starts a backend of kind and MeshGate in front of it
// (setupBridge) and returns MeshGate's listener.
func (e *env) startBridge(ctx context.Context, t *topology, kind, name string, cfg func(admin, listen, backend string) string, lacks string) (string, error) {
	b, err := e.startServer(ctx, t, kind)
	if err != nil {
		return "", err
	}
	_, listen, err := e.startMeshGateAt(ctx, t, name, func(admin, listen string) string { return cfg(admin, listen, b) }, lacks)
	return listen, err
}

var (
	setupS0 = setupDirect("legacy", (*env).legacyDial)
	setupS3 = setupBridge("grpc", "meshgate-s3", meshGatePrivToGRPC, "", (*env).legacyDial)
	// S3g is S3 with the upstream on grpc-go's client (grpc_transport:
	// grpc-go) instead of the default direct HTTP/2 transport.
	setupS3g = setupBridge("grpc", "meshgate-s3g", meshGatePrivToGRPCGo, "", (*env).legacyDial)
	setupS5  = setupDirect("grpc", (*env).grpcDial)
	setupS6  = setupBridge("legacy", "meshgate-s6", meshGateGRPCToPriv, "", (*env).grpcDial)
	// S6g is S6 with the listener on grpc-go's server (grpc_transport:
	// grpc-go) instead of the default direct HTTP/2 server transport.
	setupS6g = setupBridge("legacy", "meshgate-s6g", meshGateGRPCToPrivGRPCGo, "", (*env).grpcDial)
)

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

// setupS4 places the Envoy pair where a migration puts it: the legacy
// client's sidecar (envoy-a, IDC side) originates mTLS to the sidecar of
// the MeshGate pod (envoy-b, cloud side), which hands the private stream
// to MeshGate on loopback; MeshGate calls the gRPC service directly.
func setupS4(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	mg, err := e.startBridge(ctx, t, "grpc", "meshgate-s3", meshGatePrivToGRPC, "")
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
