package connio

import "syscall"

// Parked is one connection's place in a Parker: its socket and what
// runs, on a goroutine of its own, when the connection is taken out of
// the parker (by an event of its socket, Unpark, or the parker's end).
// Keep one per connection (Init once); the zero value is not parked.
type Parked struct {
	raw  syscall.RawConn
	wake func()
	fd   int32 // the descriptor it was parked under (under the parker's mutex)
}

// Init sets the socket of pc and the function run when it is taken out.
func (pc *Parked) Init(raw syscall.RawConn, wake func()) {
	pc.raw, pc.wake = raw, wake
}
