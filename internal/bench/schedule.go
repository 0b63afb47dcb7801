package bench

import (
	"context"
	"runtime"
	"syscall"
	"time"
)

// Schedule is an open-loop send schedule: request i is intended to be sent
// at Start + i*Interval.
type Schedule struct {
	Start    time.Time
	Interval time.Duration
}

// NewSchedule returns the schedule for rate requests per second.
func NewSchedule(start time.Time, rate float64) Schedule {
	if rate <= 0 {
		rate = 1
	}
	iv := time.Duration(float64(time.Second) / rate)
	if iv <= 0 {
		iv = 1
	}
	return Schedule{Start: start, Interval: iv}
}

// At returns the intended send time of request i.
func (s Schedule) At(i int64) time.Time {
	return s.Start.Add(time.Duration(i) * s.Interval)
}

// Count returns how many requests are intended in [Start, end).
func (s Schedule) Count(end time.Time) int64 {
	d := end.Sub(s.Start)
	if d <= 0 {
		return 0
	}
	return int64((d + s.Interval - 1) / s.Interval)
}

// sleeper waits until a time; tests replace it.
type sleeper func(ctx context.Context, until time.Time) bool

// RunOpenLoop fires request i at s.At(i) for every intended time before end,
// never waiting for responses: fire must not block on the reply. When the
// generator falls behind (a late wake-up), the late requests are fired at
// once, keeping their intended times, so the delay is charged to them. It
// returns how many requests were fired; it stops early when ctx ends.
//
// The loop runs on a locked OS thread that sleeps in nanosleep(2) with a
// 1 µs timer slack: the Go timer path rounds sub-millisecond waits up to
// the netpoller's millisecond tick on an idle process, which would charge
// the generator's own wake-up lateness (~0.5 ms) to every request.
func RunOpenLoop(ctx context.Context, s Schedule, end time.Time, fire func(i int64, intended time.Time)) int64 {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	setTimerSlack(1000)
	defer setTimerSlack(50_000) // the Linux default
	return runOpenLoop(ctx, s, end, nanosleepUntil, fire)
}

// setTimerSlack sets this thread's timer slack (prctl PR_SET_TIMERSLACK).
func setTimerSlack(ns uintptr) {
	const prSetTimerslack = 29
	_, _, _ = syscall.RawSyscall(syscall.SYS_PRCTL, prSetTimerslack, ns, 0)
}

// nanosleepUntil blocks the calling thread until the wall-clock time until,
// in slices of at most 50 ms so cancellation is noticed.
func nanosleepUntil(ctx context.Context, until time.Time) bool {
	for {
		if ctx.Err() != nil {
			return false
		}
		d := time.Until(until)
		if d <= 0 {
			return true
		}
		d = min(d, 50*time.Millisecond)
		ts := syscall.NsecToTimespec(int64(d))
		_ = syscall.Nanosleep(&ts, nil) // EINTR: loop recomputes
	}
}

func runOpenLoop(ctx context.Context, s Schedule, end time.Time, sleep sleeper, fire func(int64, time.Time)) int64 {
	n := s.Count(end)
	var i int64
	for ; i < n; i++ {
		at := s.At(i)
		if !sleep(ctx, at) {
			break
		}
		fire(i, at)
	}
	return i
}
