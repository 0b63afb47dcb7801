package bench

import (
	"context"
	"fmt"
	"time"
)

// clientKind is the protocol each scenario's client speaks ("mgp",
// "grpc" or "http").
var clientKind = map[string]string{
	"S0": "mgp", "S1": "mgp", "S1w": "mgp", "S2": "mgp", "S3": "mgp", "S3g": "mgp", "S4": "mgp", "MPP": "mgp", "MPPs": "mgp",
	"S5": "grpc", "S6": "grpc", "S6g": "grpc", "EL7": "grpc", "MGG": "grpc", "MGGs": "grpc",
	"HJ": "http", "EJT": "http",
}

// IdleResult is the memory of one scenario's processes at idle and with
// Conns idle client connections open (MGP: each used for one echo, then
// left open; gRPC: one grpc.ClientConn each, one call made). The cost per
// connection is counted from a warm process: one connection is opened and
// used first, so what the first request costs once (code pages touched,
// pools, worker goroutines, upstream connections) is not spread over the
// N connections.
type IdleResult struct {
	Scenario string     `json:"scenario"`
	Title    string     `json:"title"`
	Kind     string     `json:"kind"` // mgp or grpc
	Proxy    string     `json:"proxy,omitempty"`
	Conns    int        `json:"connections"`
	Procs    []IdleProc `json:"procs,omitempty"`
	Error    string     `json:"error,omitempty"`
}

// IdleProc is one process's RSS before any load, after one warm-up
// connection and with the idle connections; BytesPerConn is
// (RSSWithConns − RSSWarm) / N.
type IdleProc struct {
	Role         string  `json:"role"`
	RSSIdle      int64   `json:"rss_idle_bytes"`
	RSSWarm      int64   `json:"rss_warm_bytes,omitempty"`
	RSSWithConns int64   `json:"rss_with_conns_bytes"`
	BytesPerConn float64 `json:"bytes_per_conn"`
}

// proc returns the entry of role, or nil.
func (r *IdleResult) proc(role string) *IdleProc {
	for i := range r.Procs {
		if r.Procs[i].Role == role {
			return &r.Procs[i]
		}
	}
	return nil
}

// measureIdle reads every process's RSS with the topology idle (after
// setup, before any load), opens one warm-up connection (used once, kept
// open) and reads the settled RSS again, then opens n connections through
// the scenario's client, waits until the RSS of the processes stops moving
// (bounded), and reports the RSS delta from the warm reading per
// connection.
func measureIdle(ctx context.Context, e *env, l *live, n int) IdleResult {
	res := IdleResult{Scenario: l.sc.ID, Title: l.sc.Title, Kind: clientKind[l.sc.ID], Proxy: l.sc.Proxy, Conns: n}
	waitStartedFor(ctx, l.topo.procs, settleAfterStart)
	before := make([]ProcSample, len(l.topo.procs))
	for i, p := range l.topo.procs {
		before[i], _ = ReadProc(p.PID)
	}
	closeLater := func(c Client) {
		if err := c.Close(); err != nil {
			e.log.Debug("bench: idle client close", "err", err)
		}
	}
	w, err := l.topo.dial(1)
	if err != nil {
		res.Error = "dial: " + err.Error()
		return res
	}
	defer closeLater(w)
	warm := settledRSS(ctx, l.topo.procs)
	c, err := l.topo.dial(n)
	if err != nil {
		res.Error = "dial: " + err.Error()
		return res
	}
	defer closeLater(c)
	after := settledRSS(ctx, l.topo.procs)
	for i, p := range l.topo.procs {
		ip := IdleProc{Role: p.Role, RSSIdle: before[i].RSSBytes, RSSWarm: warm[i], RSSWithConns: after[i]}
		ip.BytesPerConn = float64(after[i]-warm[i]) / float64(n)
		res.Procs = append(res.Procs, ip)
	}
	return res
}

// settleAfterStart is how old every process of a topology must be before
// its idle memory is read: a process's first seconds still run start-up
// work (MeshGate trims its executable's resident pages a second time 2 s
// after start, meshgate/cmd/meshgate), and a reading taken then would
// count that start-up tail, or see it end between two readings, as the
// cost of connections.
const settleAfterStart = 3 * time.Second

// waitStartedFor waits (bounded by age) until every process is at least
// age old; a process whose age cannot be read is not waited for.
func waitStartedFor(ctx context.Context, procs []Proc, age time.Duration) {
	var wait time.Duration
	for _, p := range procs {
		if a, err := procAge(p.PID); err == nil && age-a > wait {
			wait = age - a
		}
	}
	if wait <= 0 {
		return
	}
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// settledRSS polls the processes' RSS every 100 ms until two consecutive
// readings agree within 64 KB each, for at most 3 s, and returns the last.
func settledRSS(ctx context.Context, procs []Proc) []int64 {
	read := func() []int64 {
		out := make([]int64, len(procs))
		for i, p := range procs {
			s, _ := ReadProc(p.PID)
			out[i] = s.RSSBytes
		}
		return out
	}
	last := read()
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
		cur := read()
		stable := true
		for i := range cur {
			if d := cur[i] - last[i]; d > 64<<10 || d < -64<<10 {
				stable = false
			}
		}
		last = cur
		if stable {
			break
		}
	}
	return last
}

func kb(b float64) string { return fmt.Sprintf("%.1f KB", b/1024) }
