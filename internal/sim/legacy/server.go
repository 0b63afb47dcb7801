// Package legacy holds MeshGate's reference legacy peers: a pipelined
// private-protocol server with configurable latency, reordering and error
// injection, a client built on privconn, and a closed-loop load driver.
// Tests, benchmarks and the demo use them as the "old world".
//
// Server commands:
//
//	1 echo       body (and, with EchoExt, metadata extensions) back, result 0
//	2 uppercase  ASCII-uppercased body
//	3 fail       body = result u16 big-endian, then an optional UTF-8 message
//	             returned in extension 5
//	4 slow       body starts with a u32 big-endian millisecond delay; echoes
//	other        result 1 (unknown command)
//
// Heartbeats are answered, ONEWAY requests are processed but not answered,
// and a malformed frame closes that connection only (counted in Malformed).
package legacy

import (
	"context"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/privconn"
)

// Commands served by Server.
const (
	CmdEcho      uint32 = 1
	CmdUppercase uint32 = 2
	CmdFail      uint32 = 3
	CmdSlow      uint32 = 4
)

// ErrServerClosed is returned by Serve after Close or Shutdown.
var ErrServerClosed = errors.New("legacy: server closed")

// ServerOptions configure a Server. The zero value serves MGP/1 with no
// added latency.
type ServerOptions struct {
	// Codec is the protocol spoken; default MGP/1 with a 4 MiB limit.
	Codec codec.Codec
	// Latency is added to every request.
	Latency time.Duration
	// Jitter adds a uniformly random delay in [0, Jitter) per request, so
	// replies come back out of order.
	Jitter time.Duration
	// ErrorRate in [0,1] is the fraction of requests answered with
	// result 9 (internal) and an error message instead of being served.
	ErrorRate float64
	// DuplicateRate in [0,1] is the fraction of replies sent twice (to
	// exercise unknown-seq handling in clients).
	DuplicateRate float64
	// EchoExt makes replies carry the request's extensions (except auth
	// and error message), so bridges can assert metadata travelled.
	EchoExt bool
	// OnRequest, when set, is called with every request frame before it is
	// served, from the connection's read goroutine. The frame aliases the
	// read buffer: copy what you keep. For tests that assert what arrived.
	OnRequest func(*codec.Frame)
	// Logger for connection-level events; nil discards.
	Logger *slog.Logger
}

// ServerStats are a Server's counters.
type ServerStats struct {
	Conns, Requests, Replies, Oneway, Heartbeats, Malformed, Injected, UnknownCmd uint64
}

// Server is the reference legacy server.
type Server struct {
	opts ServerOptions
	log  *slog.Logger

	mu     sync.Mutex
	lns    map[net.Listener]struct{}
	conns  map[*serverConn]struct{}
	closed bool
	quit   chan struct{}
	wg     sync.WaitGroup // conn goroutines and handlers
	addr   atomic.Value   // net.Addr of the first listener

	nConns, requests, replies, oneway, heartbeats, malformed, injected, unknownCmd atomic.Uint64
}

// NewServer returns a Server; call Serve to accept connections.
func NewServer(opts ServerOptions) *Server {
	if opts.Codec == nil {
		opts.Codec = mgp.New(0)
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Server{
		opts:  opts,
		log:   log.With("component", "legacy-server"),
		lns:   map[net.Listener]struct{}{},
		conns: map[*serverConn]struct{}{},
		quit:  make(chan struct{}),
	}
}

// Listen is a convenience: listen on addr (e.g. "127.0.0.1:0") and Serve in
// a goroutine. It returns once the listener is bound.
func (s *Server) Listen(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.addr.CompareAndSwap(nil, ln.Addr())
	go func() { _ = s.Serve(ln) }()
	return nil
}

// Addr is the address of the first listener served (nil before Serve).
func (s *Server) Addr() net.Addr {
	a, _ := s.addr.Load().(net.Addr)
	return a
}

// Stats returns the counters.
func (s *Server) Stats() ServerStats {
	return ServerStats{
		Conns: s.nConns.Load(), Requests: s.requests.Load(), Replies: s.replies.Load(),
		Oneway: s.oneway.Load(), Heartbeats: s.heartbeats.Load(), Malformed: s.malformed.Load(),
		Injected: s.injected.Load(), UnknownCmd: s.unknownCmd.Load(),
	}
}

// Serve accepts connections on ln until Close/Shutdown. It always returns a
// non-nil error (ErrServerClosed after Close).
func (s *Server) Serve(ln net.Listener) error {
	if !s.track(ln, func() {
		s.lns[ln] = struct{}{}
		s.addr.CompareAndSwap(nil, ln.Addr())
	}) {
		return ErrServerClosed
	}
	var delay time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			select {
			case <-s.quit:
				return ErrServerClosed
			default:
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		sc := &serverConn{s: s, nc: nc, w: privconn.NewFrameWriter(nc, s.opts.Codec)}
		if !s.track(nc, func() {
			s.conns[sc] = struct{}{}
			s.wg.Add(1)
		}) {
			return ErrServerClosed
		}
		s.nConns.Add(1)
		go sc.serve()
	}
}

// track runs add (recording c) under s.mu unless the server is closed;
// then it closes c and returns false.
func (s *Server) track(c io.Closer, add func()) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		_ = c.Close()
		return false
	}
	add()
	return true
}

// Close stops accepting, closes every connection at once and waits for the
// server's goroutines.
func (s *Server) Close() error {
	s.stop()
	s.mu.Lock()
	for sc := range s.conns {
		_ = sc.nc.Close()
	}
	s.mu.Unlock()
	s.wg.Wait()
	return nil
}

// Shutdown stops accepting, lets in-flight requests finish until ctx is
// done, then closes every connection.
func (s *Server) Shutdown(ctx context.Context) error {
	s.stopAccepting()
	s.mu.Lock()
	for sc := range s.conns {
		// Stop reading new requests; in-flight handlers still reply.
		_ = sc.nc.SetReadDeadline(time.Now())
	}
	s.mu.Unlock()
	if connio.Drain(ctx, s.wg.Wait, func() { _ = s.Close() }) == nil {
		s.stop()
	}
	return nil // as Close, when ctx ended first
}

func (s *Server) stopAccepting() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.lns {
		_ = ln.Close()
	}
	if !s.closed {
		s.closed = true
	}
}

func (s *Server) stop() {
	s.mu.Lock()
	select {
	case <-s.quit:
	default:
		close(s.quit)
	}
	s.mu.Unlock()
	s.stopAccepting()
}

type serverConn struct {
	s        *Server
	nc       net.Conn
	w        *privconn.FrameWriter
	scratch  []byte
	resp     codec.Frame // reply frame for the inline path
	ext      [8]codec.Ext
	handlers sync.WaitGroup
}

func (sc *serverConn) serve() {
	s := sc.s
	defer s.wg.Done()
	defer func() {
		sc.handlers.Wait()
		_ = sc.nc.Close()
		s.mu.Lock()
		delete(s.conns, sc)
		s.mu.Unlock()
	}()
	if tc, ok := sc.nc.(*net.TCPConn); ok {
		_ = tc.SetNoDelay(true)
	}
	r := codec.NewReader(sc.nc, s.opts.Codec, 32<<10)
	var f codec.Frame
	for {
		if err := r.ReadFrame(&f); err != nil {
			if errors.Is(err, codec.ErrMalformed) {
				s.malformed.Add(1)
				s.log.Debug("malformed frame, closing connection", "remote", sc.nc.RemoteAddr().String(), "err", err)
			} else if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
				s.log.Debug("read", "err", err)
			}
			return
		}
		switch {
		case f.Flags.Has(codec.FlagHeartbeat):
			if !f.Flags.Has(codec.FlagResponse) {
				s.heartbeats.Add(1)
				hb := codec.Frame{Seq: f.Seq, Flags: codec.FlagHeartbeat | codec.FlagResponse}
				_ = sc.w.WriteFrame(&hb)
			}
			continue
		case !f.IsRequest():
			continue
		}
		s.requests.Add(1)
		if s.opts.OnRequest != nil {
			s.opts.OnRequest(&f)
		}
		delay := s.opts.Latency
		if s.opts.Jitter > 0 {
			delay += rand.N(s.opts.Jitter)
		}
		if f.Cmd == CmdSlow && len(f.Body) >= 4 {
			delay += time.Duration(binary.BigEndian.Uint32(f.Body)) * time.Millisecond
		}
		if delay <= 0 {
			sc.resp = codec.Frame{Ext: sc.ext[:0]}
			sc.handle(&f, &sc.resp, &sc.scratch)
			continue
		}
		req := privconn.Clone(&f)
		sc.handlers.Add(1)
		go func() {
			defer sc.handlers.Done()
			t := time.NewTimer(delay)
			defer t.Stop()
			select {
			case <-t.C:
			case <-s.quit:
				return
			}
			var scratch []byte
			resp := codec.Frame{Ext: make([]codec.Ext, 0, 8)}
			sc.handle(req, &resp, &scratch)
		}()
	}
}

// handle serves one request and writes its reply, built in resp (whose Ext
// capacity is reused). scratch is a reusable buffer for transformed bodies.
func (sc *serverConn) handle(req *codec.Frame, resp *codec.Frame, scratch *[]byte) {
	s := sc.s
	oneway := req.Flags.Has(codec.FlagOneway)
	if oneway {
		s.oneway.Add(1)
	}
	*resp = codec.Frame{Cmd: req.Cmd, Seq: req.Seq, UIN: req.UIN, Flags: codec.FlagResponse, Ext: resp.Ext[:0]}
	if s.opts.EchoExt {
		for _, e := range req.Ext {
			if e.Key != codec.ExtAuth && e.Key != codec.ExtErrorMsg {
				resp.Ext = append(resp.Ext, e)
			}
		}
	}
	switch {
	case s.opts.ErrorRate > 0 && rand.Float64() < s.opts.ErrorRate:
		s.injected.Add(1)
		resp.Result = codec.ResultInternal
		resp.Ext = append(resp.Ext, codec.Ext{Key: codec.ExtErrorMsg, Value: injectedMsg})
	case req.Cmd == CmdEcho || req.Cmd == CmdSlow:
		resp.Body = req.Body
	case req.Cmd == CmdUppercase:
		b := append((*scratch)[:0], req.Body...)
		for i, c := range b {
			if 'a' <= c && c <= 'z' {
				b[i] = c - 'a' + 'A'
			}
		}
		*scratch = b
		resp.Body = b
	case req.Cmd == CmdFail:
		resp.Result = codec.ResultInternal
		if len(req.Body) >= 2 {
			resp.Result = binary.BigEndian.Uint16(req.Body)
			if len(req.Body) > 2 {
				resp.Ext = append(resp.Ext, codec.Ext{Key: codec.ExtErrorMsg, Value: req.Body[2:]})
			}
		}
	default:
		s.unknownCmd.Add(1)
		resp.Result = codec.ResultUnknownCommand
		resp.Ext = append(resp.Ext, codec.Ext{Key: codec.ExtErrorMsg, Value: unknownMsg})
	}
	if oneway {
		return
	}
	if err := sc.w.WriteFrame(resp); err != nil {
		return
	}
	s.replies.Add(1)
	if s.opts.DuplicateRate > 0 && rand.Float64() < s.opts.DuplicateRate {
		_ = sc.w.WriteFrame(resp)
	}
}

var (
	injectedMsg = []byte("legacy: injected error")
	unknownMsg  = []byte("legacy: unknown command")
)
