//go:build !linux

package grpcserve

// sendQueueEmpty is false where the send queue cannot be read: answers
// completed by other goroutines are then written on a goroutine of their
// own.
func (c *conn) sendQueueEmpty() bool { return false }
