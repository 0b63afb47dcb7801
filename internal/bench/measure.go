package bench

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Client is a load-generating client over a fixed number of connections.
type Client interface {
	// Go starts one request carrying payload on connection conn
	// (0 <= conn < the client's connection count) and returns without
	// waiting for the reply. done is called exactly once, from any
	// goroutine, when the reply arrives or the request fails.
	Go(conn int, payload []byte, done func(error))
	// Close closes every connection.
	Close() error
}

// Params are the load parameters of one measurement.
type Params struct {
	Rate     float64       `json:"rate_rps"`
	Conns    int           `json:"connections"`
	Payload  int           `json:"payload_bytes"`
	Duration time.Duration `json:"duration_ns"`
	Warmup   time.Duration `json:"warmup_ns"`
}

func (p Params) String() string {
	return fmt.Sprintf("%s × %g rps × %d conn", sizeName(p.Payload), p.Rate, p.Conns)
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
	payload := make([]byte, p.Payload)
	for i := range payload {
		payload[i] = byte('a' + i%26)
	}
	start := time.Now().Add(5 * time.Millisecond)
	from := start.Add(p.Warmup)
	end := from.Add(p.Duration)
	rec := NewRecorder(from)
	sched := NewSchedule(start, p.Rate)

	var (
		wmu    sync.Mutex
		window *procWindow
	)
	wt := time.AfterFunc(time.Until(from), func() {
		w := startWindow(procs)
		wmu.Lock()
		window = w
		wmu.Unlock()
	})
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
	wt.Stop()
	wmu.Lock()
	w := window
	wmu.Unlock()
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
