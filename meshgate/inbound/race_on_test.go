//go:build race

package inbound

// raceEnabled: built with the race detector, whose sync.Pool drops pooled
// objects at random (allocation counts mean nothing).
const raceEnabled = true
