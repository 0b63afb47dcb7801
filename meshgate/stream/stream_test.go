package stream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/codec"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func ctx5(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func frame(seq uint32, fl codec.Flags, body string) *codec.Frame {
	return &codec.Frame{Seq: seq, Flags: fl, Body: []byte(body)}
}

// TestServerStreamInOrderThenEOF: MORE frames are received in order, the
// final frame with result 0 ends with io.EOF after them.
func TestServerStreamInOrderThenEOF(t *testing.T) {
	tb := NewTable(8, Limits{})
	e, ok := tb.Open(1)
	if !ok {
		t.Fatal("open")
	}
	if _, ok := tb.Open(1); ok {
		t.Fatal("seq in use opened twice")
	}
	buf := []byte("a")
	f := &codec.Frame{Seq: 1, Flags: codec.FlagMore | codec.FlagResponse, Body: buf}
	tb.Dispatch(f)
	buf[0] = 'X' // the read buffer is reused: the queued message is a copy
	tb.Dispatch(frame(1, codec.FlagMore|codec.FlagResponse, "b"))
	if a := tb.Dispatch(frame(1, codec.FlagResponse, "")); a != Queued || tb.Len() != 1 {
		t.Fatalf("final: %v, open %d (kept until Close)", a, tb.Len())
	}
	tb.Dispatch(frame(1, codec.FlagMore|codec.FlagResponse, "late")) // dropped: the exchange ended
	if tb.Dispatch(&codec.Frame{Seq: 1, Flags: codec.FlagCancel}) != Cancelled {
		t.Fatal("a CANCEL after the end must still reach the exchange")
	}
	select {
	case <-e.Gone():
	default:
		t.Fatal("Gone not closed by CANCEL")
	}
	for _, want := range []string{"a", "b"} {
		m, err := e.Recv(ctx5(t))
		if err != nil || string(m) != want {
			t.Fatalf("recv %q %v, want %q", m, err, want)
		}
	}
	for range 2 {
		if _, err := e.Recv(ctx5(t)); err != io.EOF {
			t.Fatalf("end: %v", err)
		}
	}
}

func TestFinalResultAndMessage(t *testing.T) {
	tb := NewTable(8, Limits{})
	e, _ := tb.Open(3)
	tb.Dispatch(frame(3, codec.FlagMore|codec.FlagResponse, "x"))
	f := frame(3, codec.FlagResponse, "")
	f.Result = codec.ResultNotFound
	f.Ext = []codec.Ext{{Key: codec.ExtErrorMsg, Value: []byte("gone")}}
	tb.Dispatch(f)
	if m, _ := e.Recv(ctx5(t)); string(m) != "x" {
		t.Fatal("message before the end lost")
	}
	var ee *EndError
	if _, err := e.Recv(ctx5(t)); !errors.As(err, &ee) || ee.Result != codec.ResultNotFound || ee.Msg != "gone" {
		t.Fatalf("end %v", err)
	}
}

// TestClientStreamLastFrameCarriesMessage: a client stream's last request
// frame may carry a message.
func TestClientStreamLastFrameCarriesMessage(t *testing.T) {
	tb := NewTable(8, Limits{})
	e, _ := tb.Open(4)
	tb.Dispatch(frame(4, codec.FlagMore, "1"))
	tb.Dispatch(frame(4, 0, "2"))
	got := ""
	for {
		m, err := e.Recv(ctx5(t))
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		got += string(m)
	}
	if got != "12" {
		t.Fatalf("got %q", got)
	}
}

// TestSlowConsumerOverflowsOnlyItsExchange: one exchange whose consumer
// reads nothing overflows at its bound and ends with result 6, while
// Dispatch never blocks and another exchange on the same table keeps
// flowing.
func TestSlowConsumerOverflowsOnlyItsExchange(t *testing.T) {
	tb := NewTable(8, Limits{Messages: 4})
	slow, _ := tb.Open(1)
	fast, _ := tb.Open(2)
	var got []string
	var overflowed bool
	for i := range 10 {
		switch a := tb.Dispatch(frame(1, codec.FlagMore|codec.FlagResponse, "s")); {
		case i < 4 && a != Queued:
			t.Fatalf("message %d: %v", i, a)
		case i == 4:
			overflowed = a == Overflowed
		case i > 4 && a != Queued:
			t.Fatalf("after overflow later frames are dropped by the ended exchange, got %v", a)
		}
		tb.Dispatch(frame(2, codec.FlagMore|codec.FlagResponse, fmt.Sprint(i)))
		m, err := fast.Recv(ctx5(t))
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, string(m))
	}
	if !overflowed {
		t.Fatal("the slow exchange did not overflow at its bound")
	}
	if len(got) != 10 {
		t.Fatalf("fast exchange got %d messages", len(got))
	}
	if ended, local := slow.Ended(); !ended || !local {
		t.Fatal("overflow must end the exchange locally (the peer is told)")
	}
	n := 0
	var err error
	for err == nil {
		_, err = slow.Recv(ctx5(t))
		n++
	}
	var ee *EndError
	if !errors.As(err, &ee) || ee.Result != codec.ResultOverloaded || n != 5 {
		t.Fatalf("slow exchange: %d messages then %v", n-1, err)
	}
	tb.Close(1)
	if tb.Dispatch(frame(1, codec.FlagMore, "x")) != NotStream {
		t.Fatal("Close must forget the seq")
	}
}

func TestByteBound(t *testing.T) {
	e := New(Limits{Messages: 100, Bytes: 10})
	if e.Offer(make([]byte, 6)) != nil {
		t.Fatal("first")
	}
	if !errors.Is(e.Offer(make([]byte, 6)), ErrOverflow) {
		t.Fatal("byte bound not enforced")
	}
}

// TestCancelWakesRecv: a peer CANCEL (or a local one) ends a Recv blocked
// on an empty exchange with result 11.
func TestCancelWakesRecv(t *testing.T) {
	tb := NewTable(8, Limits{})
	e, _ := tb.Open(9)
	done := make(chan error, 1)
	go func() {
		_, err := e.Recv(ctx5(t))
		done <- err
	}()
	if a := tb.Dispatch(&codec.Frame{Seq: 9, Flags: codec.FlagCancel}); a != Cancelled {
		t.Fatalf("dispatch cancel: %v", a)
	}
	var ee *EndError
	select {
	case err := <-done:
		if !errors.As(err, &ee) || ee.Result != codec.ResultCancelled {
			t.Fatalf("recv: %v", err)
		}
	case <-ctx5(t).Done():
		t.Fatal("Recv not woken by CANCEL")
	}
	if e.Cancel() {
		t.Fatal("second cancel reported as ending it")
	}
}

func TestRecvContextAndCancelAll(t *testing.T) {
	tb := NewTable(2, Limits{})
	e, _ := tb.Open(1)
	tb.Open(2)
	if _, ok := tb.Open(3); ok {
		t.Fatal("table bound not enforced")
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := e.Recv(ctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("recv on done ctx: %v", err)
	}
	tb.CancelAll()
	if tb.Len() != 0 {
		t.Fatal("CancelAll left exchanges")
	}
	if _, err := e.Recv(ctx5(t)); err == nil {
		t.Fatal("exchange not ended by CancelAll")
	}
}

// TestConcurrentProducerConsumer: -race, every message in order.
func TestConcurrentProducerConsumer(t *testing.T) {
	e := New(Limits{Messages: 16})
	const n = 2000
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < n; {
			if e.Buffered() >= 16 {
				time.Sleep(10 * time.Microsecond) // producer paced by the consumer in this test only
				continue
			}
			if err := e.Offer([]byte(fmt.Sprint(i))); err != nil {
				t.Error(err)
				return
			}
			i++
		}
		e.Finish(0, "")
	}()
	for i := 0; ; i++ {
		m, err := e.Recv(ctx5(t))
		if err == io.EOF {
			if i != n {
				t.Fatalf("got %d messages", i)
			}
			break
		}
		if err != nil || string(m) != fmt.Sprint(i) {
			t.Fatalf("message %d: %q %v", i, m, err)
		}
	}
	wg.Wait()
}

func TestFrameBuilders(t *testing.T) {
	var f codec.Frame
	MessageFrame(&f, 5, 6, 7, true, []byte("m"))
	if f.Flags != codec.FlagMore|codec.FlagResponse || f.Cmd != 5 || f.Seq != 6 || f.UIN != 7 || string(f.Body) != "m" {
		t.Fatalf("message %+v", f)
	}
	EndFrame(&f, 5, 6, 7, true, codec.ResultInternal, "boom")
	if v, _ := f.ExtValue(codec.ExtErrorMsg); f.Flags != codec.FlagResponse || f.Result != 9 || string(v) != "boom" || f.Body != nil {
		t.Fatalf("end %+v", f)
	}
	EndFrame(&f, 5, 6, 7, false, 0, "")
	if f.Flags != 0 || len(f.Ext) != 0 {
		t.Fatalf("request end %+v", f)
	}
	CancelFrame(&f, 5, 6, 7)
	if f.Flags != codec.FlagCancel {
		t.Fatalf("cancel %+v", f)
	}
}
