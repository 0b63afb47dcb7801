package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Client is a load-generating client over a fixed number of connections.
type Client interface {
	// Go starts one request carrying payload on connection conn
	// (0 <= conn < the client's connection count) and returns without
	// waiting for the reply. done is called exactly once, from any
	// goroutine, when the reply arrives or the request fails. Go may be
	// called from several goroutines at once (closed-loop workers).
	Go(conn int, payload []byte, done func(error))
	// Close closes every connection.
	Close() error
}

// closeAll closes every connection of conns and joins their errors.
func closeAll[C interface{ Close() error }](conns []C) error {
	var errs []error
	for _, c := range conns {
		errs = append(errs, c.Close())
	}
	return errors.Join(errs...)
}

// Params are the load parameters of one measurement.
type Params struct {
	Rate     float64       `json:"rate_rps"`
	Conns    int           `json:"connections"`
	Payload  int           `json:"payload_bytes"`
	Duration time.Duration `json:"duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
	// InFlight > 0 selects closed loop: InFlight workers each send a
	// request and wait for its reply before sending the next, as fast as
	// the system allows; Rate is then ignored (0).
	InFlight int `json:"in_flight,omitempty"`
}

// Closed reports whether p is a closed-loop (saturation) point.
func (p Params) Closed() bool { return p.InFlight > 0 }

func (p Params) String() string {
	if p.Closed() {
		return fmt.Sprintf("%s × closed K=%d × %d conn", sizeName(p.Payload), p.InFlight, p.Conns)
	}
	return fmt.Sprintf("%s × %g rps × %d conn", sizeName(p.Payload), p.Rate, p.Conns)
}

// same reports whether p and q are the same load point.
func (p Params) same(q Params) bool {
	return p.Rate == q.Rate && p.Conns == q.Conns && p.Payload == q.Payload && p.InFlight == q.InFlight
}

func sizeName(n int) string {
	switch {
	case n >= 1024 && n%1024 == 0:
		return fmt.Sprintf("%d KB", n/1024)
	default:
		return fmt.Sprintf("%d B", n)
	}
}

// Run is the outcome of one measurement.
type Run struct {
	// Repeat is the repeat index (0-based): hop differences pair the runs
	// of two scenarios with the same index, measured back to back.
	Repeat      int              `json:"repeat"`
	Intended    Latency          `json:"intended"` // from intended send time (CO-free)
	Actual      Latency          `json:"actual"`   // from actual send time
	Sent        int64            `json:"sent"`
	OK          int64            `json:"ok"`
	Errors      int64            `json:"errors"`
	ErrorKinds  map[string]int64 `json:"error_kinds,omitempty"`
	AchievedRPS float64          `json:"achieved_rps"`
	Procs       []ProcUsage      `json:"procs"`
	// Background is the CPU, in cores, used by everything outside this
	// scenario's processes during the window (a noise indicator on a
	// shared machine).
	Background float64 `json:"background_cores"`
	// Shadow is the increase of MeshGate's shadow counters over the
	// measurement, warm-up included (shadow scenarios only).
	Shadow *ShadowCounts `json:"shadow,omitempty"`
}

// ErrNoRequests reports a measurement that completed nothing.
var ErrNoRequests = errors.New("bench: no request completed")

// Measure runs one open-loop measurement of c at p and reads the resource
// use of procs over the measured window. Requests still in flight drain
// after the end of the schedule for at most drain; those that do not are
// counted as errors.
func Measure(ctx context.Context, c Client, p Params, procs []Proc, drain time.Duration) (Run, error) {
	if p.Conns < 1 {
		p.Conns = 1
	}
	payload := makePayload(p.Payload)
	if p.Closed() {
		return measureClosed(ctx, c, p, payload, procs, drain)
	}
	start := time.Now().Add(5 * time.Millisecond)
	from := start.Add(p.Warmup)
	end := from.Add(p.Duration)
	rec := NewRecorder(from)
	sched := NewSchedule(start, p.Rate)

	window := windowFrom(from, procs)
	var sent int64
	RunOpenLoop(ctx, sched, end, func(i int64, intended time.Time) {
		if !intended.Before(from) {
			sent++
		}
		rec.Begin()
		now := time.Now()
		c.Go(int(i%int64(p.Conns)), payload, func(err error) {
			rec.Record(intended, now, time.Now(), err)
		})
	})
	// Drain.
	deadline := time.Now().Add(drain)
	for rec.Pending() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(time.Millisecond)
	}
	if n := rec.Close(); n > 0 {
		rec.AddErrors(n, fmt.Sprintf("no reply within %s after the run", drain))
	}
	w := window()
	in, act, ok, errs, kinds := rec.Snapshot()
	run := Run{Intended: in, Actual: act, Sent: sent, OK: ok, Errors: errs, ErrorKinds: kinds,
		AchievedRPS: float64(ok) / p.Duration.Seconds()}
	if w != nil {
		run.Procs, run.Background = w.stop(ok)
	}
	if err := ctx.Err(); err != nil {
		return run, err
	}
	if ok == 0 {
		return run, fmt.Errorf("%w (%d errors: %v)", ErrNoRequests, errs, kinds)
	}
	return run, nil
}

func makePayload(n int) []byte {
	payload := make([]byte, n)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	return payload
}

// measureClosed runs p.InFlight workers, each sending its next request as
// soon as the previous reply arrives (worker w uses connection w mod
// Conns), for the warm-up plus the duration. Latency is from the send
// (intended = actual in closed loop); AchievedRPS is the saturation
// throughput and the processes' CPU over the window gives requests per
// CPU-second.
func measureClosed(ctx context.Context, c Client, p Params, payload []byte, procs []Proc, drain time.Duration) (Run, error) {
	start := time.Now()
	from := start.Add(p.Warmup)
	end := from.Add(p.Duration)
	rec := NewRecorder(from)
	window := windowFrom(from, procs)
	var sent atomic.Int64
	var wg sync.WaitGroup
	for w := range p.InFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			reply := make(chan struct{}, 1)
			for ctx.Err() == nil {
				now := time.Now()
				if !now.Before(end) {
					return
				}
				if !now.Before(from) {
					sent.Add(1)
				}
				rec.Begin()
				c.Go(w%p.Conns, payload, func(err error) {
					rec.Record(now, now, time.Now(), err)
					reply <- struct{}{}
				})
				select {
				case <-reply:
				case <-time.After(drain):
					// The reply may still come; Close counts it as an error.
					return
				}
			}
		}()
	}
	wg.Wait()
	// The window ends with the last worker; a reply that a worker
	// gave up on counts as an error.
	w := window()
	var ok int64
	var procsUse []ProcUsage
	var bg float64
	if n := rec.Close(); n > 0 {
		rec.AddErrors(n, fmt.Sprintf("no reply within %s", drain))
	}
	in, act, okN, errs, kinds := rec.Snapshot()
	ok = okN
	if w != nil {
		procsUse, bg = w.stop(ok)
	}
	el := time.Since(from).Seconds()
	if el <= 0 {
		el = p.Duration.Seconds()
	}
	run := Run{Intended: in, Actual: act, Sent: sent.Load(), OK: ok, Errors: errs, ErrorKinds: kinds,
		AchievedRPS: float64(ok) / el, Procs: procsUse, Background: bg}
	if err := ctx.Err(); err != nil {
		return run, err
	}
	if ok == 0 {
		return run, fmt.Errorf("%w (%d errors: %v)", ErrNoRequests, errs, kinds)
	}
	return run, nil
}

// windowFrom starts the process window of procs at from (the end of the
// warm-up); the returned func stops waiting for it and returns it, nil if
// from has not come.
func windowFrom(from time.Time, procs []Proc) func() *procWindow {
	var (
		mu sync.Mutex
		w  *procWindow
	)
	t := time.AfterFunc(time.Until(from), func() {
		pw := startWindow(procs)
		mu.Lock()
		w = pw
		mu.Unlock()
	})
	return func() *procWindow {
		t.Stop()
		mu.Lock()
		defer mu.Unlock()
		return w
	}
}
