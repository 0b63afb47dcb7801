package runtime

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/internal/testkit"
)

// directConfig has two grpc listeners with the same routes to one legacy
// MGP server: grpc-go and direct (the default transport, named).
func directConfig(legacyEP string) string {
	routes := `
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
      - {method: /legacy.Legacy/Uppercase, cmd: 2, upstream: legacy}
      - {method: /legacy.Legacy/Fail, cmd: 3, upstream: legacy}
      - {method: /legacy.Legacy/Slow, cmd: 4, upstream: legacy}
      - {method: /legacy.Legacy/Oneway, cmd: 1, upstream: legacy, oneway: true}`
	return fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
defaults: {timeout: 2s, drain_timeout: 5s}
listeners:
  - name: grpcgo
    kind: grpc
    address: 127.0.0.1:0
    grpc_transport: grpc-go%s
  - name: direct
    kind: grpc
    address: 127.0.0.1:0
    grpc_transport: direct%s
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q], connections: 2}
`, routes, routes, legacyEP)
}

// outcome is what a client sees of one call.
type outcome struct {
	Body           string
	Code           codes.Code
	Msg            string
	Header, Traile metadata.MD
}

func invoke(t *testing.T, cc *grpc.ClientConn, method string, body []byte, md ...string) outcome {
	t.Helper()
	ctx := metadata.AppendToOutgoingContext(testkit.Context(t, 5*time.Second), md...)
	var out []byte
	var hdr, trl metadata.MD
	err := cc.Invoke(ctx, method, body, &out, grpc.Header(&hdr), grpc.Trailer(&trl))
	st := status.Convert(err)
	for _, m := range []metadata.MD{hdr, trl} {
		delete(m, "content-type")
	}
	return outcome{Body: string(out), Code: st.Code(), Msg: st.Message(), Header: hdr, Traile: trl}
}

// TestDirectTransportSameAsGRPCGo: a grpc listener with grpc_transport
// direct answers grpc-go clients exactly as the grpc-go listener with the
// same routes does (bodies, statuses, messages, reply extensions as
// metadata, unrouted methods, oneway), serves health Check and Watch
// (delegated to grpc-go's server), counts the
// route metrics the same way, and keeps serving across a reload.
func TestDirectTransportSameAsGRPCGo(t *testing.T) {
	rt := start(t, mustParse(t, directConfig(legacyServer(t))))
	rt.mu.Lock()
	for name, direct := range map[string]bool{"grpcgo": false, "direct": true} {
		if got := rt.listeners[name].srv.(*grpcServer).direct != nil; got != direct {
			t.Fatalf("listener %s served by grpcserve: %v", name, got)
		}
	}
	rt.mu.Unlock()
	gcc := testkit.Client(t, rt.Addr("grpcgo").String())
	dcc := testkit.Client(t, rt.Addr("direct").String())
	var fail [2]byte
	binary.BigEndian.PutUint16(fail[:], 8)
	var slow [4]byte
	binary.BigEndian.PutUint32(slow[:], 3000) // past the route timeout (2s)
	calls := []struct {
		name, method string
		body         []byte
		md           []string
	}{
		{"echo", "/legacy.Legacy/Echo", []byte("hello"), nil},
		{"echo with extensions", "/legacy.Legacy/Echo", []byte("x"), []string{"x-mgp-uin", "42", "x-mgp-ext-32770-bin", "\x00\x01\xff"}},
		{"uppercase", "/legacy.Legacy/Uppercase", []byte("via bridge"), nil},
		{"application error", "/legacy.Legacy/Fail", append(fail[:], "gone ü%"...), nil},
		{"unrouted", "/legacy.Legacy/Nope", []byte{}, nil},
		{"invalid method name", "/legacy.Legacy/../x", []byte{}, nil},
		{"empty body", "/legacy.Legacy/Echo", []byte{}, nil},
		{"bad uin", "/legacy.Legacy/Echo", []byte("x"), []string{"x-mgp-uin", "nope"}},
		{"oneway", "/legacy.Legacy/Oneway", []byte("fire"), nil},
		{"upstream timeout", "/legacy.Legacy/Slow", slow[:], nil},
		{"large", "/legacy.Legacy/Echo", []byte(strings.Repeat("L", 300<<10)), nil},
	}
	for _, c := range calls {
		want := invoke(t, gcc, c.method, c.body, c.md...)
		got := invoke(t, dcc, c.method, c.body, c.md...)
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s:\n direct  %#v\n grpc-go %#v", c.name, got, want)
		}
	}
	if n := count(t, rt, "meshgate_grpc_protocol_errors_total", "direct"); n != 0 {
		t.Errorf("the direct listener ended %v connections for protocol errors", n)
	}
	if a, b := count(t, rt, "meshgate_requests_total", "grpcgo"), count(t, rt, "meshgate_requests_total", "direct"); a != b || a == 0 {
		t.Errorf("meshgate_requests_total: grpc-go listener %v, direct %v", a, b)
	}

	hc := healthpb.NewHealthClient(testkit.Dial(t, rt.Addr("direct").String()))
	ctx := testkit.Context(t, 5*time.Second)
	testkit.Succeeds(t, ctx, 20*time.Millisecond, func() error {
		resp, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "legacy.Legacy"})
		if err == nil && resp.Status != healthpb.HealthCheckResponse_SERVING {
			return fmt.Errorf("status %v", resp.Status)
		}
		return err
	}, "health Check on the direct listener")
	if _, err := hc.Check(ctx, &healthpb.HealthCheckRequest{Service: "nope.Svc"}); status.Code(err) != codes.NotFound {
		t.Fatalf("health of an unknown service: %v", err)
	}
	// Watch (a server stream) is delegated to the listener's grpc-go server.
	w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := w.Recv(); err != nil || r.Status != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Watch: %v %v", r, err)
	}

	// Concurrent calls, then a reload that changes a route.
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				if o := invoke(t, dcc, "/legacy.Legacy/Echo", []byte("c")); o.Code != codes.OK || o.Body != "c" {
					errs <- fmt.Errorf("%+v", o)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	y := strings.ReplaceAll(directConfig(legacyServer(t)), "/legacy.Legacy/Echo, cmd: 1", "/legacy.Legacy/Echo, cmd: 2")
	if err := rt.Reload(mustParse(t, y)); err != nil {
		t.Fatal(err)
	}
	if o := invoke(t, dcc, "/legacy.Legacy/Echo", []byte("now upper")); o.Body != "NOW UPPER" {
		t.Fatalf("after reload: %+v", o)
	}
}

// count sums the counter name of listener l.
func count(t *testing.T, rt *Runtime, name, l string) float64 {
	t.Helper()
	return countWith(t, rt, name, map[string]string{"listener": l})
}

// countWith sums the counter name over the series carrying every label
// of want.
func countWith(t *testing.T, rt *Runtime, name string, want map[string]string) float64 {
	t.Helper()
	mfs, err := rt.Metrics().Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var n float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			matched := 0
			for _, lp := range m.GetLabel() {
				if v, ok := want[lp.GetName()]; ok && v == lp.GetValue() {
					matched++
				}
			}
			if matched == len(want) {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

// TestDirectKeepalivePing: limits.keepalive_time and keepalive_timeout of
// a grpc listener reach the direct server: a silent client is PINGed and,
// not answering, closed.
func TestDirectKeepalivePing(t *testing.T) {
	rt := start(t, mustParse(t, fmt.Sprintf(`
defaults: {drain_timeout: 1s}
listeners:
  - name: direct
    kind: grpc
    address: 127.0.0.1:0
    limits: {keepalive_time: 100ms, keepalive_timeout: 200ms}
    routes:
      - {method: /legacy.Legacy/Echo, cmd: 1, upstream: legacy}
upstreams:
  - {name: legacy, protocol: private, endpoints: [%q]}
`, legacyServer(t))))
	nc, err := net.DialTimeout("tcp", rt.Addr("direct").String(), 2*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	_ = nc.SetDeadline(time.Now().Add(5 * time.Second))
	fr := http2.NewFramer(nc, nc)
	if _, err := io.WriteString(nc, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	pinged := false
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			if !pinged {
				t.Fatalf("connection ended without a keepalive PING: %v", err)
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatal("an unanswered keepalive PING did not close the connection")
			}
			return // closed after the unanswered PING
		}
		if p, ok := f.(*http2.PingFrame); ok && !p.IsAck() {
			pinged = true
		}
	}
}
