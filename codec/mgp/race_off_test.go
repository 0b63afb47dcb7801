//go:build !race

package mgp

const raceEnabled = false
