package push

import (
	"errors"

	"github.com/meshgate/meshgate/codec"
)

// Fanout delivers through every Deliverer (one Registry per private
// listener with a push section): the push reaches the uin on whichever
// listeners hold it.
type Fanout []Deliverer

// Deliver implements Deliverer: the sum of the deliveries; with none,
// ErrFull when some connection refused for its bound, else ErrNotConnected.
func (fo Fanout) Deliver(uin uint64, f *codec.Frame) (int, error) {
	total := 0
	var full error
	for _, d := range fo {
		n, err := d.Deliver(uin, f)
		total += n
		if err != nil && errors.Is(err, ErrFull) {
			full = err
		}
	}
	switch {
	case total > 0:
		return total, nil
	case full != nil:
		return 0, full
	default:
		return 0, ErrNotConnected
	}
}
