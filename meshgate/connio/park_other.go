//go:build !linux

package connio

// ParkSupported: elsewhere an idle connection waits on a small goroutine.
const ParkSupported = false

// Parker holds nothing outside Linux: Park refuses.
type Parker struct{}

// Park reports false: the caller waits on a goroutine.
func (*Parker) Park(*Parked) bool { return false }

// Unpark reports false.
func (*Parker) Unpark(*Parked) bool { return false }

// Holds reports false.
func (*Parker) Holds(*Parked) bool { return false }

// Len is 0.
func (*Parker) Len() int { return 0 }

// Close does nothing.
func (*Parker) Close() {}
