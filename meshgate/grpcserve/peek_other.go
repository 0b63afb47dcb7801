//go:build !linux

package grpcserve

// peekSupported: elsewhere every connection keeps its buffer (idle.go).
const peekSupported = false

func (c *conn) peek(uintptr) bool { return true }
