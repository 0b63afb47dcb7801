package push

import (
	"errors"
	"iter"
	"slices"

	"github.com/meshgate/meshgate/codec"
)

// Fanout delivers through every Deliverer (one Registry per private
// listener with a push section): the push reaches the uin on whichever
// listeners hold it.
type Fanout []Deliverer

// Deliver implements Deliverer (DeliverAll over fo).
func (fo Fanout) Deliver(uin uint64, f *codec.Frame) (int, error) {
	return DeliverAll(slices.Values(fo), uin, f)
}

// DeliverAll delivers f to uin through every Deliverer of ds: the sum of
// the deliveries; with none, ErrFull when some connection refused for its
// bound, else ErrNotConnected.
func DeliverAll(ds iter.Seq[Deliverer], uin uint64, f *codec.Frame) (int, error) {
	total := 0
	var full error
	for d := range ds {
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
