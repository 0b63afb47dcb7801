//go:build !race

package inbound

// raceEnabled: built with the race detector (see race_on_test.go).
const raceEnabled = false
