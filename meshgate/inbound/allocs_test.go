package inbound

import (
	"fmt"
	"net"
	"runtime"
	"runtime/debug"
	"sort"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/codec"
)

// ownAllocs counts the heap allocations made by MeshGate's own code while
// run runs: every allocation (runtime.MemProfileRate 1) whose stack has a
// frame of a meshgate/meshgate package, except those of the test's own
// goroutine (the client), of the in-process grpc-go server (whose
// handler goroutines run the demo service), and the runtime's own
// bookkeeping (a sync.Pool's storage growing again after a GC, a
// contended mutex's wait entry). It returns the count and the
// counted stacks, most allocations first.
func ownAllocs(t *testing.T, run func()) (int64, []string) {
	t.Helper()
	old := runtime.MemProfileRate
	runtime.MemProfileRate = 1
	defer func() { runtime.MemProfileRate = old }()
	// The profile is published at the end of a GC cycle, up to two
	// cycles late.
	snapshot := func() map[[32]uintptr]runtime.MemProfileRecord {
		runtime.GC()
		runtime.GC()
		var recs []runtime.MemProfileRecord
		n, _ := runtime.MemProfile(nil, true)
		for {
			recs = make([]runtime.MemProfileRecord, n+64)
			var ok bool
			if n, ok = runtime.MemProfile(recs, true); ok {
				break
			}
		}
		out := make(map[[32]uintptr]runtime.MemProfileRecord, n)
		for _, r := range recs[:n] {
			out[r.Stack0] = r
		}
		return out
	}
	before := snapshot()
	// No GC while run runs: it would empty the pools again.
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	run()
	after := snapshot()
	var total int64
	counted := map[string]int64{}
	for k, r := range after {
		n := r.AllocObjects - before[k].AllocObjects
		if n <= 0 {
			continue
		}
		var b strings.Builder
		own, foreign := false, false
		frames := runtime.CallersFrames(r.Stack())
		for {
			f, more := frames.Next()
			fn := f.Function
			switch {
			case strings.HasPrefix(fn, "testing.tRunner"),
				strings.HasPrefix(fn, "google.golang.org/grpc.(*Server)"),
				strings.HasPrefix(fn, "google.golang.org/grpc/internal/transport.(*http2Server)"),
				strings.HasPrefix(fn, "google.golang.org/grpc/internal/transport.(*loopyWriter)"),
				strings.HasPrefix(fn, "github.com/meshgate/meshgate/internal/"),
				// the runtime's own bookkeeping, not per request: a
				// sync.Pool growing again after a GC emptied it, a
				// contended lock's wait queue entry
				strings.HasPrefix(fn, "sync.(*poolChain)"),
				strings.HasPrefix(fn, "sync.(*Pool).pinSlow"),
				strings.HasPrefix(fn, "internal/sync.runtime_Semacquire"),
				strings.HasPrefix(fn, "sync.runtime_Semacquire"):
				foreign = true
			case strings.HasPrefix(fn, "github.com/meshgate/meshgate/meshgate/"):
				own = true
			}
			fmt.Fprintf(&b, "\n\t%s", fn)
			if !more {
				break
			}
		}
		if own && !foreign {
			total += n
			counted[b.String()] += n
		}
	}
	keys := make([]string, 0, len(counted))
	for s := range counted {
		keys = append(keys, s)
	}
	sort.Slice(keys, func(i, j int) bool { return counted[keys[i]] > counted[keys[j]] })
	stacks := make([]string, len(keys))
	for i, k := range keys {
		stacks[i] = fmt.Sprintf("%d allocs:%s", counted[k], k)
	}
	return total, stacks
}

// serialCalls sends reqs one at a time on a new connection to addr from
// the test's goroutine, checking each reply (result 0, the body echoed),
// n times over.
func serialCalls(t *testing.T, addr string, c codec.Codec, n int, reqs ...codec.Frame) func() {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	wires := make([][]byte, len(reqs))
	for i := range reqs {
		if wires[i], err = c.Append(nil, &reqs[i]); err != nil {
			t.Fatal(err)
		}
	}
	rd := codec.NewReader(nc, c, 64<<10)
	var f codec.Frame
	return func() {
		for i := range n {
			r := &reqs[i%len(reqs)]
			if _, err := nc.Write(wires[i%len(wires)]); err != nil {
				t.Fatal(err)
			}
			if err := rd.ReadFrame(&f); err != nil || f.Result != 0 || len(f.Body) != len(r.Body) {
				t.Fatalf("reply %d: %v %+v", i, err, f)
			}
		}
	}
}

// TestBridgeOwnAllocs: a private → gRPC request costs MeshGate's own code
// (inbound, mapping, grpcpool, grpcdirect, rawcodec, resilience, ...) no
// heap allocation on the path the product takes for a one-attempt route
// (the I/O goroutines: grpcpool.StartPolicy, grpcdirect.StartIn), nor on
// the workers' paths: a route through its Guard (as with retries),
// a one-attempt route whose client's connection is not plain TCP, and a
// route with retries (workerAllocsCeiling); real TCP, a real grpc-go
// server. The requests carry a uin,
// a caller and a deadline, so the metadata and grpc-timeout are sent.
// The grpc-go server's and the client's allocations are not counted.
func TestBridgeOwnAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector's sync.Pool drops objects at random: allocation counts mean nothing")
	}
	const calls = 2000
	reqs := []codec.Frame{
		{Cmd: cmdEcho, Seq: 1, UIN: 123456789, Body: make([]byte, 1024), Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc-a")}, deadlineExt(3000)}},
		{Cmd: cmdEcho, Seq: 2, UIN: 123456789, Body: make([]byte, 16), Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc-a")}, deadlineExt(3000)}},
	}
	for _, tc := range []struct {
		name    string
		mode    int
		ceiling float64 // own allocations per request
	}{
		{"async", grpcAsync, 0.05},
		{"workers", grpcWorkers, workerAllocsCeiling},
		{"workers one attempt", grpcWait, waitAllocsCeiling},
		{"workers retries", grpcRetry, waitAllocsCeiling},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newGRPCEnv(t, tc.mode)
			short := serialCalls(t, e.addr, e.codec, calls/4, reqs...)
			long := serialCalls(t, e.addr, e.codec, calls/4+calls, reqs...)
			short() // warm the pools and the HPACK tables
			long()
			// The snapshots' GCs empty the sync.Pools, so each run first
			// makes their objects again: a cost per run, not per request,
			// which the difference of a short and a long run cancels.
			n0, _ := ownAllocs(t, short)
			n1, stacks := ownAllocs(t, long)
			per := float64(n1-n0) / calls
			t.Logf("%s: %d and %d own allocations in %d and %d requests: %.3f per request", tc.name, n0, n1, calls/4, calls/4+calls, per)
			if per > tc.ceiling || testing.Verbose() {
				for i, s := range stacks {
					if i == 10 {
						break
					}
					t.Log(s)
				}
			}
			if per > tc.ceiling {
				t.Fatalf("%.3f own allocations per request, ceiling %.2f", per, tc.ceiling)
			}
		})
	}
}

// workerAllocsCeiling is what a request on the workers' path allocates in
// MeshGate's code: none (0.01 measured; before, 9.0: the call's
// context.WithTimeout, 4, and the direct transport's context.AfterFunc on
// that fresh context, 5). A route through its Guard on the direct
// transport passes the deadline as a value (resilience.Guard.DoUntil) and
// starts each attempt with it (grpcpool.Pool.StartAt, grpcdirect's
// Start), waiting for the completion on a channel kept in the pooled
// request (guardedUntil); the request metadata and the Guard's endpoint
// are call options (grpcdirect.OutgoingMD, grpcpool.AtEndpoint). Hedged
// routes and grpc-go transport upstreams keep a context per request.
const workerAllocsCeiling = 0.05

// waitAllocsCeiling is what a request of a one-attempt route allocates
// in MeshGate's code on the workers' path (a client whose connection is
// not plain TCP, as a TLS client's; telemetry on; a shadow copy): the
// worker starts the call as the I/O goroutines do and waits for its
// completion (waitDirect), with no context, timer or AfterFunc of its
// own.
const waitAllocsCeiling = 0.05
