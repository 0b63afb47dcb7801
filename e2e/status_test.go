package e2e

import (
	"context"
	"encoding/binary"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/e2e/harness"
	"github.com/meshgate/meshgate/internal/sim/legacy"
	"github.com/meshgate/meshgate/internal/testkit"
)

// statusServer is a grpc-go server answering every method with the status
// its request describes: "<code>\n<x-mgp-result or empty>\n<message>". It
// also sets an application extension in its response headers (two values)
// and another in its trailers.
func statusServer(t *testing.T) string {
	t.Helper()
	return testkit.AnyMethod(t, func(ctx context.Context, req []byte) ([]byte, error) {
		f := strings.SplitN(string(req), "\n", 3)
		if len(f) != 3 {
			return nil, status.Error(codes.InvalidArgument, "bad request")
		}
		code, _ := strconv.Atoi(f[0])
		_ = grpc.SetHeader(ctx, metadata.Pairs("x-mgp-ext-40000-bin", "h1", "x-mgp-ext-40000-bin", "h2"))
		_ = grpc.SetTrailer(ctx, metadata.Pairs("x-mgp-ext-40001-bin", "t"))
		if f[1] != "" {
			_ = grpc.SetTrailer(ctx, metadata.Pairs("x-mgp-result", f[1]))
		}
		if code == 0 {
			return []byte("ok"), nil
		}
		return nil, status.Error(codes.Code(code), f[2])
	})
}

// TestStatusDoubleBridge is the decisive status test, with the real
// binary. One MeshGate routes to itself:
//
//	gRPC → private → gRPC: grpc-go client → grpc_in → (MGP) → priv_in →
//	(gRPC) → statusServer. All 17 gRPC codes with their messages, results
//	0–16, 17, 100 and 1234 come back as they left, and the server's
//	response header and trailer extensions arrive.
//
//	private → gRPC → private: MGP client → priv_in → (gRPC) → grpc_in →
//	(MGP) → legacy server failing with the requested result. Every result
//	and its message come back.
//
// It also checks a oneway route and a client stream (cardinality) through
// the binary. Before this change, codes 1, 2, 6, 9, 10, 11 and 15 and
// results 10–16 came back changed.
func TestStatusDoubleBridge(t *testing.T) {
	backend := statusServer(t)
	ls, _ := testkit.Legacy(t, nil, nil, legacy.ServerOptions{})
	cfg := fmt.Sprintf(`
defaults: {drain_timeout: 1s}
listeners:
- name: priv_in
  kind: private
  address: 127.0.0.1:0
  routes:
  - {cmd: 7, method: /t.Status/Do, upstream: backend}
  - {cmd: 8, method: /legacy.L/Fail, upstream: self_grpc}
- name: grpc_in
  kind: grpc
  address: 127.0.0.1:0
  routes:
  - {method: "/t.Status/*", cmd: 7, upstream: self_priv}
  - {method: "/legacy.L/*", cmd: %d, upstream: legacy}
  - {method: "/t.Fire/*", cmd: %d, upstream: legacy, oneway: true}
upstreams:
- {name: backend, protocol: grpc, endpoints: [%q]}
- {name: self_grpc, protocol: grpc, endpoints: [%q]}
- {name: self_priv, protocol: private, endpoints: [%q]}
- {name: legacy, protocol: private, endpoints: [%q]}
`, legacy.CmdFail, legacy.CmdEcho, backend, harness.ListenerRef("grpc_in"), harness.ListenerRef("priv_in"), ls.Addr().String())
	mg := harness.StartMeshgate(t, cfg, harness.WaitReady(20*time.Second))
	priv := mg.Addr("priv_in")
	cc := testkit.Client(t, mg.Addr("grpc_in"))
	call := func(code codes.Code, app, msg string) (hdr, trl metadata.MD, err error) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		var out []byte
		err = cc.Invoke(ctx, "/t.Status/Do", []byte(fmt.Sprintf("%d\n%s\n%s", code, app, msg)), &out, grpc.Header(&hdr), grpc.Trailer(&trl))
		return hdr, trl, err
	}
	harness.Eventually(t, 10*time.Second, "double bridge up", func() error {
		_, _, err := call(codes.OK, "", "")
		return err
	})

	// All 17 gRPC codes with their messages.
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		msg := "status " + c.String() + " — ünïcode"
		hdr, trl, err := call(c, "", msg)
		st := status.Convert(err)
		if st.Code() != c || (c != codes.OK && st.Message() != msg) {
			t.Errorf("gRPC %v %q came back as %v %q", c, msg, st.Code(), st.Message())
		}
		if v := trl.Get("x-mgp-result"); len(v) != 0 {
			t.Errorf("gRPC %v: unexpected x-mgp-result %v", c, v)
		}
		// The server's header and trailer extensions, repeated values kept.
		all := metadata.Join(hdr, trl)
		if strings.Join(all.Get("x-mgp-ext-40000-bin"), ",") != "h1,h2" || strings.Join(all.Get("x-mgp-ext-40001-bin"), ",") != "t" {
			t.Errorf("gRPC %v: response metadata header %v trailer %v", c, hdr, trl)
		}
	}
	// Results 0–16 and past the table, as a gRPC server states them.
	results := []uint16{17, 100, 1234}
	for r := uint16(0); r <= 16; r++ {
		results = append(results, r)
	}
	for _, r := range results {
		code, isApp := codec.GRPCCode(r)
		app := ""
		if isApp {
			app = strconv.Itoa(int(r))
		}
		_, trl, err := call(codes.Code(code), app, "result "+strconv.Itoa(int(r)))
		var back uint16
		if v := trl.Get("x-mgp-result"); len(v) == 1 {
			n, _ := strconv.Atoi(v[0])
			back = uint16(n)
		}
		if got := codec.ResultFor(uint32(status.Code(err)), back); got != r {
			t.Errorf("result %d came back as %d (%v, trailer %v)", r, got, err, trl)
		}
	}

	// private → gRPC → private: results from a legacy server.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	mc := testkit.LegacyClient(t, priv, legacy.ClientOptions{Conns: 1})
	// MeshGate dialled its own gRPC listener before it listened: wait
	// until every connection of that pool has come back from backoff.
	harness.Eventually(t, 10*time.Second, "private → gRPC → private up", func() error {
		for range 4 {
			resp, err := mc.Call(ctx, 8, 42, []byte{0, 0}, nil)
			if err != nil {
				return err
			}
			if resp.Result != 0 {
				return fmt.Errorf("result %d", resp.Result)
			}
		}
		return nil
	})
	for _, r := range append(results, 99, 65535) {
		msg := "legacy result " + strconv.Itoa(int(r)) + " ✓"
		body := append(binary.BigEndian.AppendUint16(nil, r), msg...)
		resp, err := mc.Call(ctx, 8, 42, body, nil)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := resp.ExtValue(codec.ExtErrorMsg)
		if resp.Result != r || (r != 0 && string(got) != msg) {
			t.Errorf("result %d %q came back as %d %q", r, msg, resp.Result, got)
		}
	}

	// A oneway route: answered OK and empty, the backend gets ONEWAY.
	before := ls.Stats().Oneway
	var out []byte
	if err := cc.Invoke(ctx, "/t.Fire/And", []byte("forget"), &out); err != nil || len(out) != 0 {
		t.Fatalf("oneway route: %q %v", out, err)
	}
	harness.Eventually(t, 5*time.Second, "oneway frame at the backend", func() error {
		if n := ls.Stats().Oneway; n != before+1 {
			return fmt.Errorf("backend saw %d oneway frames", n-before)
		}
		return nil
	})

	// A client stream with three messages: INTERNAL cardinality violation.
	st, err := cc.NewStream(ctx, &grpc.StreamDesc{ClientStreams: true, ServerStreams: true}, "/legacy.L/Echo")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "b", "c"} {
		if err := st.SendMsg([]byte(m)); err != nil {
			t.Fatal(err)
		}
	}
	_ = st.CloseSend()
	if err := st.RecvMsg(&out); status.Code(err) != codes.Internal || !strings.Contains(err.Error(), "cardinality violation") {
		t.Fatalf("client stream: %v", err)
	}
}
