package bench

import (
	"context"
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

func sleepUntil(ctx context.Context, until time.Time) bool {
	d := time.Until(until)
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}

// RunOpenLoop fires request i at s.At(i) for every intended time before end,
// never waiting for responses: fire must not block on the reply. When the
// generator falls behind (a late wake-up), the late requests are fired at
// once, keeping their intended times, so the delay is charged to them. It
// returns how many requests were fired; it stops early when ctx ends.
func RunOpenLoop(ctx context.Context, s Schedule, end time.Time, fire func(i int64, intended time.Time)) int64 {
	return runOpenLoop(ctx, s, end, sleepUntil, fire)
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
