//go:build !linux

package connio

// PeekSupported: elsewhere every connection keeps its read buffer.
const PeekSupported = false

// Peeker does nothing outside Linux.
type Peeker struct{}

// Ready reports true.
func (*Peeker) Ready(uintptr) bool { return true }
