//go:build !linux

package grpcserve

// parker: elsewhere an idle connection waits on a small goroutine.
type parker struct{}

func (*parker) park(*conn) bool   { return false }
func (*parker) unpark(*conn) bool { return false }
func (*parker) close()            {}
