//go:build !linux

package inbound

// peekSupported: elsewhere every connection keeps its frame reader.
const peekSupported = false

func (c *conn) peek(uintptr) bool { return true }

func (c *conn) writeRaw(uintptr) bool { return true }
