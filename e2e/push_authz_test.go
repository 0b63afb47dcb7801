package e2e

import (
	"context"
	"crypto/tls"
	"fmt"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/privconn"
	"github.com/meshgate/meshgate/meshgate/push"
	"github.com/meshgate/meshgate/meshgate/push/pushpb"
)

// TestPushAPIOverMTLSWithAuthz: the push API on an mTLS gRPC listener obeys
// the listener's authz: an identity granted /meshgate.v1.Push/Send pushes,
// another is PERMISSION_DENIED and nothing reaches the user.
func TestPushAPIOverMTLSWithAuthz(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := testpki.WriteSet(dir, "meshgate")
	if err != nil {
		t.Fatal(err)
	}
	f := files["meshgate"]
	cfg := fmt.Sprintf(`admin: {address: 127.0.0.1:0}
readiness: none
listeners:
  - name: clients
    kind: private
    address: 127.0.0.1:0
    push: {trust_uin: true}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: backend}]
  - name: push-api
    kind: grpc
    address: 127.0.0.1:0
    tls: {cert_file: %q, key_file: %q, ca_file: %q}
    authz:
      allow:
        - {identities: ["spiffe://meshgate.test/ns/game/sa/notifier"], methods: ["/meshgate.v1.Push/Send"]}
    push: {api: true}
upstreams:
  - {name: backend, protocol: grpc, endpoints: ["127.0.0.1:1"]}
`, f.CertFile, f.KeyFile, f.CAFile)
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

	dialAs := func(id string) *grpc.ClientConn {
		leaf, err := ca.IssueLeaf("client", id)
		if err != nil {
			t.Fatal(err)
		}
		pair, err := tls.X509KeyPair(leaf.CertPEM, leaf.KeyPEM)
		if err != nil {
			t.Fatal(err)
		}
		cc, err := grpc.NewClient(api, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			RootCAs: ca.Pool(), ServerName: "localhost", Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12})))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { cc.Close() })
		return cc
	}
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
