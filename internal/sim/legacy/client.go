package legacy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/HdrHistogram/hdrhistogram-go"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// ClientOptions configure a Client.
type ClientOptions struct {
	// Codec is the protocol spoken; default MGP/1.
	Codec codec.Codec
	// Conns is the number of connections, used round-robin; default 1.
	Conns int
	// Conn is passed to every privconn.
	Conn privconn.Options
	// Logger; nil discards.
	Logger *slog.Logger
}

// Client is a legacy private-protocol client over multiplexed connections.
type Client struct {
	conns []*privconn.Conn
	next  atomic.Uint32
}

// Dial opens opts.Conns connections to addr.
func Dial(ctx context.Context, addr string, opts ClientOptions) (*Client, error) {
	if opts.Codec == nil {
		opts.Codec = mgp.New(0)
	}
	if opts.Conns <= 0 {
		opts.Conns = 1
	}
	if opts.Conn.Logger == nil {
		opts.Conn.Logger = opts.Logger
	}
	c := &Client{}
	for range opts.Conns {
		cn, err := privconn.Dial(ctx, addr, opts.Codec, opts.Conn)
		if err != nil {
			c.Close()
			return nil, err
		}
		c.conns = append(c.conns, cn)
	}
	return c, nil
}

// Conns returns the underlying connections.
func (c *Client) Conns() []*privconn.Conn { return c.conns }

func (c *Client) pick() *privconn.Conn {
	return c.conns[int(c.next.Add(1))%len(c.conns)]
}

// Call sends one request and returns the reply (owned by the caller). A
// non-zero reply Result is not an error.
func (c *Client) Call(ctx context.Context, cmd uint32, uin uint64, body []byte, exts []codec.Ext) (*codec.Frame, error) {
	f := codec.Frame{Cmd: cmd, UIN: uin, Body: body, Ext: exts}
	return c.pick().Do(ctx, &f)
}

// Do sends req (its Seq is overwritten) and returns the reply.
func (c *Client) Do(ctx context.Context, req *codec.Frame) (*codec.Frame, error) {
	return c.pick().Do(ctx, req)
}

// Send sends a ONEWAY request.
func (c *Client) Send(ctx context.Context, cmd uint32, uin uint64, body []byte, exts []codec.Ext) error {
	f := codec.Frame{Cmd: cmd, UIN: uin, Body: body, Ext: exts}
	return c.pick().Send(ctx, &f)
}

// Close closes every connection.
func (c *Client) Close() error {
	for _, cn := range c.conns {
		_ = cn.Close()
	}
	return nil
}

// LoadOptions configure RunLoad, a closed-loop load driver.
type LoadOptions struct {
	Addr        string
	Codec       codec.Codec // default MGP/1
	Conns       int         // connections; default 1
	Concurrency int         // workers in total; default 1
	Requests    int         // total requests (0 = until Duration)
	Duration    time.Duration
	Size        int    // body bytes; at least the 20-byte request id
	Cmd         uint32 // default CmdEcho
	UIN         uint64 // 0 = a different uin per request
	Timeout     time.Duration
}

// LoadResult summarises a run. Latencies are in microseconds.
type LoadResult struct {
	Count, Errors, Mismatches, NonOK int64
	Elapsed                          time.Duration
	AvgUs                            float64
	P50Us, P90Us, P99Us, MaxUs       int64
}

// String formats the result on one line.
func (r LoadResult) String() string {
	rate := float64(r.Count) / r.Elapsed.Seconds()
	return fmt.Sprintf("requests=%d errors=%d mismatches=%d non_ok=%d elapsed=%v rate=%.0f/s avg=%.1fus p50=%dus p90=%dus p99=%dus max=%dus",
		r.Count, r.Errors, r.Mismatches, r.NonOK, r.Elapsed.Round(time.Millisecond), rate, r.AvgUs, r.P50Us, r.P90Us, r.P99Us, r.MaxUs)
}

// ErrMismatch reports a reply that did not echo its request.
var ErrMismatch = errors.New("legacy: reply does not match its request")

// RequestBody builds the body of request id: the decimal id padded to 20
// digits, then filler up to size bytes. Every request's body is unique.
func RequestBody(dst []byte, id uint64, size int) []byte {
	dst = dst[:0]
	s := strconv.AppendUint(make([]byte, 0, 20), id, 10)
	for range 20 - len(s) {
		dst = append(dst, '0')
	}
	dst = append(dst, s...)
	for len(dst) < size {
		dst = append(dst, 'x')
	}
	return dst
}

// Expect returns the body the server replies with for cmd and req, and
// whether the command has a checkable reply.
func Expect(cmd uint32, req []byte, dst []byte) ([]byte, bool) {
	switch cmd {
	case CmdEcho:
		return req, true
	case CmdUppercase:
		dst = append(dst[:0], req...)
		for i, c := range dst {
			if 'a' <= c && c <= 'z' {
				dst[i] = c - 'a' + 'A'
			}
		}
		return dst, true
	}
	return nil, false
}

// RunLoad drives a closed loop: Concurrency workers share Conns connections
// and each sends its next request when the previous reply arrives. Every
// reply is checked against its own request (unique id in the body).
func RunLoad(ctx context.Context, o LoadOptions) (LoadResult, error) {
	if o.Conns <= 0 {
		o.Conns = 1
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 1
	}
	if o.Cmd == 0 {
		o.Cmd = CmdEcho
	}
	if o.Timeout <= 0 {
		o.Timeout = 5 * time.Second
	}
	if o.Requests <= 0 && o.Duration <= 0 {
		o.Requests = 10000
	}
	cl, err := Dial(ctx, o.Addr, ClientOptions{Codec: o.Codec, Conns: o.Conns})
	if err != nil {
		return LoadResult{}, err
	}
	defer cl.Close()
	var (
		ids                    atomic.Int64
		errs, mism, nonOK, cnt atomic.Int64
		mu                     sync.Mutex
		total                  = hdrhistogram.New(1, 60_000_000, 3)
		wg                     sync.WaitGroup
	)
	var deadline time.Time
	if o.Duration > 0 {
		deadline = time.Now().Add(o.Duration)
	}
	start := time.Now()
	for range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h := hdrhistogram.New(1, 60_000_000, 3)
			var body, exp []byte
			var ok bool
			for ctx.Err() == nil {
				id := ids.Add(1)
				if o.Requests > 0 && id > int64(o.Requests) {
					break
				}
				if !deadline.IsZero() && time.Now().After(deadline) {
					break
				}
				body = RequestBody(body, uint64(id), o.Size)
				uin := o.UIN
				if uin == 0 {
					uin = uint64(id)
				}
				cctx, cancel := context.WithTimeout(ctx, o.Timeout)
				t0 := time.Now()
				resp, err := cl.Call(cctx, o.Cmd, uin, body, nil)
				el := time.Since(t0)
				cancel()
				cnt.Add(1)
				if err != nil {
					errs.Add(1)
					continue
				}
				_ = h.RecordValue(max(el.Microseconds(), 1))
				if resp.Result != codec.ResultOK {
					nonOK.Add(1)
					continue
				}
				exp, ok = Expect(o.Cmd, body, exp)
				if resp.UIN != uin || resp.Cmd != o.Cmd || (ok && string(resp.Body) != string(exp)) {
					mism.Add(1)
				}
			}
			mu.Lock()
			total.Merge(h)
			mu.Unlock()
		}()
	}
	wg.Wait()
	r := LoadResult{
		Count: cnt.Load(), Errors: errs.Load(), Mismatches: mism.Load(), NonOK: nonOK.Load(),
		Elapsed: time.Since(start), AvgUs: total.Mean(),
		P50Us: total.ValueAtQuantile(50), P90Us: total.ValueAtQuantile(90),
		P99Us: total.ValueAtQuantile(99), MaxUs: total.Max(),
	}
	if r.Mismatches > 0 {
		return r, fmt.Errorf("%w: %d replies", ErrMismatch, r.Mismatches)
	}
	return r, nil
}
