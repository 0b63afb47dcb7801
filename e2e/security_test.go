package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/push"
	"github.com/meshgate/meshgate/meshgate/push/pushpb"
)

// TestAuthAndAuthz runs the real binary with HMAC auth and a key id × cmd
// policy on its private listener and an identity × method policy on its
// mTLS grpc listener: allowed requests reach the backends, a replayed frame
// gets result 3, a denied one result 4 / PERMISSION_DENIED, the backends
// never see the refused ones, and /metrics counts them.
func TestAuthAndAuthz(t *testing.T) {
	dir, ca, files := testkit.PKI(t, "meshgate")
	// gRPC backend: test.Svc/Gate counts what reaches it.
	var gate, legacySeen atomic.Int64
	gaddr := (&testkit.Stub{Services: map[string]map[string]demo.Handler{"test.Svc": {"Gate": func(_ context.Context, req []byte) ([]byte, error) {
		gate.Add(1)
		return req, nil
	}}}}).Start(t)
	// Private backend: the legacy server counts what reaches it.
	lb, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{OnRequest: func(*codec.Frame) { legacySeen.Add(1) }})

	f := files["meshgate"]
	cfg := fmt.Sprintf(`
listeners:
  - name: mgp_in
    kind: private
    address: 127.0.0.1:0
    auth: {keys: {7: "key-seven-secret", 8: "key-eight-secret"}, max_skew: 30s}
    authz:
      allow:
        - {key_ids: [7], cmds: [1]}
        - {key_ids: [8], cmds: [2]}
    routes:
      - {cmd: 1, method: /test.Svc/Gate, upstream: grpc_be}
      - {cmd: 2, method: /test.Svc/Gate, upstream: grpc_be}
  - name: grpc_in
    kind: grpc
    address: 127.0.0.1:0
    tls: %s
    authz:
      allow:
        - {identities: ["spiffe://meshgate.test/ns/game/sa/web"], methods: ["/legacy.Legacy/*"]}
    routes:
      - {method: /legacy.Legacy/*, cmd: %d, upstream: legacy}
upstreams:
  - {name: grpc_be, protocol: grpc, endpoints: [%q]}
  - {name: legacy, protocol: private, endpoints: [%q]}
`, f.YAML(), legacy.CmdEcho, gaddr, lb.Addr().String())
	mg := harness.StartMeshgate(t, cfg, harness.InDir(dir), harness.WaitReady(20*time.Second))
	priv, grpcAddr := mg.Addr("mgp_in"), mg.Addr("grpc_in")

	// MGP/1 with HMAC.
	c := mgp.New(0)
	now := uint64(time.Now().UnixMilli())
	sign := func(keyID uint32, secret string, cmd uint32, nonce uint64) []byte {
		b, err := c.Sign(nil, &codec.Frame{Cmd: cmd, Seq: uint32(nonce), Body: []byte("hi")}, keyID, []byte(secret), now, nonce)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	nc, err := net.DialTimeout("tcp", priv, 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	rd := codec.NewReader(nc, c, 4096)
	exchange := func(raw []byte) uint16 {
		t.Helper()
		_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := nc.Write(raw); err != nil {
			t.Fatal(err)
		}
		var r codec.Frame
		if err := rd.ReadFrame(&r); err != nil {
			t.Fatal(err)
		}
		return r.Result
	}
	captured := sign(7, "key-seven-secret", 1, 1)
	for _, tc := range []struct {
		name string
		raw  []byte
		want uint16
	}{
		{"key 7 cmd 1 (allowed)", captured, codec.ResultOK},
		{"replay of it", captured, codec.ResultUnauthenticated},
		{"key 8 cmd 1 (not granted)", sign(8, "key-eight-secret", 1, 2), codec.ResultForbidden},
		{"key 8 cmd 2 (allowed)", sign(8, "key-eight-secret", 2, 3), codec.ResultOK},
		{"key 7 cmd 2 (not granted)", sign(7, "key-seven-secret", 2, 4), codec.ResultForbidden},
		{"wrong secret", sign(7, "guess", 1, 5), codec.ResultUnauthenticated},
	} {
		if got := exchange(tc.raw); got != tc.want {
			t.Errorf("%s: result %d, want %d", tc.name, got, tc.want)
		}
	}
	if n := gate.Load(); n != 2 {
		t.Errorf("gRPC backend saw %d requests, want 2 (the allowed ones)", n)
	}

	// The CLI signs with -key-id and the secret from $MESHGATE_KEY.
	cli := exec.Command(harness.MeshgateDevBin(t), "call", "mgp", "-addr", priv, "-cmd", "1", "-key-id", "7", "-data", "cli")
	cli.Env = append(cli.Environ(), "MESHGATE_KEY=key-seven-secret")
	if out, err := cli.CombinedOutput(); err != nil || !strings.Contains(string(out), `result=0 body="cli"`) {
		t.Errorf("call mgp -key-id 7: %v\n%s", err, out)
	}
	cli = exec.Command(harness.MeshgateDevBin(t), "call", "mgp", "-addr", priv, "-cmd", "2", "-key-id", "7")
	cli.Env = append(cli.Environ(), "MESHGATE_KEY=key-seven-secret")
	if out, err := cli.CombinedOutput(); err == nil || !strings.Contains(string(out), "result=4") {
		t.Errorf("call mgp -key-id 7 -cmd 2: %v\n%s", err, out)
	}
	if n := gate.Load(); n != 3 {
		t.Errorf("gRPC backend saw %d requests, want 3", n)
	}

	// gRPC over mTLS.
	dialAs := func(id string) *grpc.ClientConn {
		return testkit.Client(t, grpcAddr, clientCert(t, ca, id))
	}
	invoke := func(cc *grpc.ClientConn) codes.Code {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []byte
		return status.Code(cc.Invoke(ctx, "/legacy.Legacy/Echo", []byte("hello"), &out))
	}
	if got := invoke(dialAs("spiffe://meshgate.test/ns/game/sa/web")); got != codes.OK {
		t.Errorf("allowed identity: %v", got)
	}
	if got := invoke(dialAs("spiffe://meshgate.test/ns/game/sa/intruder")); got != codes.PermissionDenied {
		t.Errorf("other identity: %v, want PermissionDenied", got)
	}
	if n := legacySeen.Load(); n != 1 {
		t.Errorf("legacy backend saw %d requests, want 1", n)
	}

	metrics, err := mg.Metrics()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`meshgate_auth_failures_total{listener="mgp_in",reason="replay"} 1`,
		`meshgate_auth_failures_total{listener="mgp_in",reason="forbidden"} 3`,
		`meshgate_auth_failures_total{listener="mgp_in",reason="bad_mac"} 1`,
		`meshgate_auth_failures_total{listener="grpc_in",reason="forbidden"} 1`,
	} {
		if !strings.Contains(metrics, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	// A reload that grants key 8 cmd 1 applies to new requests; the
	// listener's replay cache survives it.
	mg.Reload(strings.Replace(cfg, "{key_ids: [8], cmds: [2]}", "{key_ids: [8], cmds: [1, 2]}", 1))
	nonce := uint64(100)
	harness.Eventually(t, 15*time.Second, "reloaded policy grants key 8 cmd 1", func() error {
		nonce++
		if got := exchange(sign(8, "key-eight-secret", 1, nonce)); got != codec.ResultOK {
			return fmt.Errorf("result %d", got)
		}
		return nil
	})
	if got := exchange(captured); got != codec.ResultUnauthenticated {
		t.Errorf("replay after reload: result %d", got)
	}

	// A policy naming an unknown key id is refused, naming the field.
	bad := strings.Replace(cfg, "{key_ids: [8], cmds: [2]}", "{key_ids: [9], cmds: [2]}", 1)
	out, err := exec.Command(harness.MeshgateBin(t), "validate", "-c", harness.WriteFile(t, dir, "bad.yaml", []byte(bad))).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "listeners[0].authz.allow[1].key_ids[0]: unknown key id 9") {
		t.Errorf("validate: err=%v\n%s", err, out)
	}
}

// TestPushAPIOverMTLSWithAuthz: the push API on an mTLS gRPC listener obeys
// the listener's authz: an identity granted /meshgate.v1.Push/Send pushes,
// another is PERMISSION_DENIED and nothing reaches the user.
func TestPushAPIOverMTLSWithAuthz(t *testing.T) {
	dir, ca, files := testkit.PKI(t, "meshgate")
	f := files["meshgate"]
	cfg := fmt.Sprintf(`readiness: none
listeners:
`+trustUINClients+`  - name: push-api
    kind: grpc
    address: 127.0.0.1:0
    tls: %s
    authz:
      allow:
        - {identities: ["spiffe://meshgate.test/ns/game/sa/notifier"], methods: ["/meshgate.v1.Push/Send"]}
    push: {api: true}
upstreams:
  - {name: backend, protocol: grpc, endpoints: ["127.0.0.1:1"]}
`, f.YAML())
	mg := harness.StartMeshgate(t, cfg, harness.InDir(dir))
	harness.WaitHTTP200(t, 20*time.Second, mg.AdminURL("/healthz"))
	priv, api := mg.Addr("clients"), mg.Addr("push-api")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	pushes := make(chan codec.Frame, 4)
	cn, err := privconn.Dial(ctx, priv, mgp.New(0), privconn.Options{Heartbeat: -1, OnPush: func(f *codec.Frame) { pushes <- *privconn.Clone(f) }})
	if err != nil {
		t.Fatal(err)
	}
	defer cn.Close()
	cn.Do(ctx, &codec.Frame{Cmd: 1, UIN: 9}) // the upstream is down; the uin is bound anyway

	dialAs := func(id string) *grpc.ClientConn { return testkit.Dial(t, api, clientCert(t, ca, id)) }
	send := func(cc *grpc.ClientConn, method string, body string) error {
		if method == push.MethodSendBatch {
			return cc.Invoke(ctx, method, &pushpb.SendBatchRequest{Items: []*pushpb.SendRequest{{Uin: 9, Cmd: 5, Body: []byte(body)}}}, &pushpb.SendBatchResponse{})
		}
		return cc.Invoke(ctx, method, &pushpb.SendRequest{Uin: 9, Cmd: 5, Body: []byte(body)}, &pushpb.SendResponse{})
	}
	intruder := dialAs("spiffe://meshgate.test/ns/game/sa/intruder")
	if err := send(intruder, push.MethodSend, "forged"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("other identity: %v", err)
	}
	notifier := dialAs("spiffe://meshgate.test/ns/game/sa/notifier")
	if err := send(notifier, push.MethodSendBatch, "batch"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("granted Send only, SendBatch: %v", err)
	}
	if err := send(notifier, push.MethodSend, "real"); err != nil {
		t.Fatalf("granted identity: %v", err)
	}
	select {
	case p := <-pushes:
		if string(p.Body) != "real" {
			t.Fatalf("the user received %q (a refused push got through)", p.Body)
		}
	case <-ctx.Done():
		t.Fatal("push not delivered")
	}
}

// TestTLSEveryHopBinary runs the meshgate binary with mTLS on every hop it
// owns — private listener, grpc listener, gRPC upstream, private upstream
// (which `meshgate run` used to refuse with exit 1) — with the health
// listener and loopback admin, then rotates the CA and every certificate:
// calls keep flowing on established connections and new connections use
// the new CA.
func TestTLSEveryHopBinary(t *testing.T) {
	dir, _, files := testkit.PKI(t, "meshgate", "client", "backend")
	b := files["backend"]
	backTLS := testkit.TLSServer(t, b, 50*time.Millisecond)
	// Private backend: the reference legacy server behind mTLS.
	_, laddr := testkit.Legacy(t, nil, backTLS.Config(), legacy.ServerOptions{})
	// gRPC backend: demo.Echo behind mTLS.
	gaddr := testkit.Demo(t, grpc.Creds(backTLS.Credentials()))

	// Relative file names: resolved against the config file's directory.
	mtls := "{cert_file: meshgate.pem, key_file: meshgate-key.pem, ca_file: ca.pem}"
	y := fmt.Sprintf(`
admin: {address: 127.0.0.1:0, health_address: 127.0.0.1:0}
tls: {refresh_interval: 50ms}
listeners:
  - {name: mgp-in, kind: private, address: 127.0.0.1:0, tls: %s,
     routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]}
  - {name: grpc-in, kind: grpc, address: 127.0.0.1:0, tls: %s,
     routes: [{method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}]}
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q], connections: 1,
     tls: {cert_file: meshgate.pem, key_file: meshgate-key.pem, ca_file: ca.pem, server_name: localhost}}
  - {name: legacy, protocol: private, endpoints: [%q], connections: 1, tls: %s}
`, mtls, mtls, gaddr, laddr, mtls)
	mg := harness.StartMeshgate(t, y, harness.InDir(dir))
	admin, health, mgpIn, grpcIn := mg.Admin(), mg.Health(), mg.Addr("mgp-in"), mg.Addr("grpc-in")
	harness.WaitHTTP200(t, 20*time.Second, "http://"+health+"/readyz")

	// Admin exposure: pprof off by default; the health listener has no
	// /config.
	if code, _, err := harness.HTTPGet("http://" + admin + "/debug/pprof/"); err != nil || code != 404 {
		t.Fatalf("admin pprof: %d %v, want 404", code, err)
	}
	if code, _, err := harness.HTTPGet("http://" + health + "/config"); err != nil || code != 404 {
		t.Fatalf("health /config: %d %v, want 404", code, err)
	}

	c := files["client"]
	clientTLS := testkit.TLSClient(t, testkit.Config(c, "localhost"), 50*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	dialMGP := func() (*privconn.Conn, error) {
		dctx, dcancel := context.WithTimeout(ctx, 2*time.Second)
		defer dcancel()
		return privconn.Dial(dctx, mgpIn, mgp.New(0), privconn.Options{Heartbeat: -1,
			TLS: func(ctx context.Context) (*tls.Config, error) { return clientTLS.Config(ctx, mgpIn) }})
	}
	mgpEcho := func(cn *privconn.Conn, body string) error {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		r, err := cn.Do(cctx, &codec.Frame{Cmd: 1, Body: []byte(body)})
		if err != nil {
			return err
		}
		if r.Result != 0 || string(r.Body) != body {
			return fmt.Errorf("reply result %d body %q", r.Result, r.Body)
		}
		return nil
	}
	cc := testkit.Client(t, grpcIn, grpc.WithTransportCredentials(clientTLS.Credentials()))
	grpcEcho := func(body string) error {
		cctx, ccancel := context.WithTimeout(ctx, 3*time.Second)
		defer ccancel()
		var out []byte
		if err := cc.Invoke(cctx, "/legacy.Legacy/Echo", []byte(body), &out); err != nil {
			return err
		}
		if string(out) != body {
			return fmt.Errorf("echo %q", out)
		}
		return nil
	}

	var est *privconn.Conn
	harness.Eventually(t, 10*time.Second, "private listener (mTLS) -> gRPC upstream (mTLS)", func() error {
		cn, err := dialMGP()
		if err != nil {
			return err
		}
		if err := mgpEcho(cn, "hello"); err != nil {
			_ = cn.Close()
			return err
		}
		est = cn
		return nil
	})
	t.Cleanup(func() { _ = est.Close() })
	harness.Eventually(t, 10*time.Second, "grpc listener (mTLS) -> private upstream (mTLS)", func() error { return grpcEcho("hi") })

	// Rotate the CA and every certificate (MeshGate's, the client's, the
	// backends').
	ca2, err := testpki.NewCA("ca-two")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca2.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"meshgate", "client", "backend"} {
		if _, _, err := ca2.Issue(dir, n); err != nil {
			t.Fatal(err)
		}
	}
	// New connections: only the new CA works now, so a successful new
	// private connection proves MeshGate serves and verifies with it.
	harness.Eventually(t, 10*time.Second, "new private connection with CA two", func() error {
		cn, err := dialMGP()
		if err != nil {
			return err
		}
		defer cn.Close()
		return mgpEcho(cn, "fresh")
	})
	// Established connections (downstream private, downstream gRPC, and the
	// upstream connections behind them) keep working.
	if err := mgpEcho(est, "established"); err != nil {
		t.Fatalf("established private connection after rotation: %v", err)
	}
	if err := grpcEcho("established"); err != nil {
		t.Fatalf("established gRPC connection after rotation: %v", err)
	}
}
