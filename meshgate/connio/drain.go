package connio

import "context"

// Drain runs wait (a graceful stop, or waiting for the connections to
// end) until it returns or ctx ends. When ctx ends first it runs force (a
// hard stop, which must make wait return), waits for wait and returns
// ctx.Err().
func Drain(ctx context.Context, wait, force func()) error {
	done := make(chan struct{})
	go func() { wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		force()
		<-done
		return ctx.Err()
	}
}
