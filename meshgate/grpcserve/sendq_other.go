//go:build !linux

package grpcserve

import "syscall"

// sendQueueEmpty is false where the send queue cannot be read: answers
// completed by other goroutines are then written on a goroutine of their
// own.
func sendQueueEmpty(syscall.RawConn, *sendQueue) bool { return false }

// sendQueue: nothing elsewhere.
type sendQueue struct{ fn func(uintptr) }
