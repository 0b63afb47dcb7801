package grpcserve

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc/credentials"
)

// Delegated streams.
//
// A stream whose method the Handler does not serve on the fast path
// (FastPath.Fast false: streaming methods, services registered on a
// grpc-go server, unknown methods) is handed, at HEADERS time, to
// Config.Fallback, an http.Handler such as *grpc.Server (whose ServeHTTP
// is grpc-go's handler transport), on a goroutine of its own. The
// goroutine sees an *http.Request (POST, HTTP/2, URL.Path the :path, the
// request headers, a Body fed by the stream's DATA frames, RemoteAddr, TLS,
// a context carrying http.LocalAddrContextKey and cancelled when the
// client resets the stream or the connection closes) and a
// ResponseWriter + Flusher that writes HEADERS, DATA and trailers (net/http's
// rules: keys declared in "Trailer", keys prefixed http.TrailerPrefix) on
// the stream.
//
// Flow control both ways: the request body buffers at most the stream's
// receive window (StreamWindow) and grants it back (WINDOW_UPDATE) as the
// handler reads; a response write waits until the peer's stream and
// connection windows allow, at most WriteTimeout (then the stream is
// reset). A delegated stream counts against MaxConcurrentStreams and
// MaxInFlightPerConn like a fast one; Shutdown waits for it. A handler
// that returns without writing anything gets RST_STREAM INTERNAL_ERROR.

// FastPath is an optional interface of a Handler used with
// Config.Fallback: Fast reports whether the Handler serves calls of
// method itself (as unary Calls); the other streams are delegated to the
// Fallback. It runs on the connection's reading goroutine at HEADERS time
// and must not block.
type FastPath interface {
	Fast(method string) bool
}

// errStreamGone: the stream was reset or its connection closed.
var errStreamGone = errors.New("grpcserve: stream closed")

// delegated is the state of one delegated stream.
type delegated struct {
	c   *conn
	cl  *Call
	ctx context.Context
	end context.CancelFunc

	// request body (Body)
	mu      sync.Mutex
	more    chan struct{} // closed and replaced, when a Read waits (waiting), as data, EOF or an error arrive
	waiting bool
	buf     []byte // received; buf[off:] not yet read (bounded by the stream window)
	off     int
	used    int64  // stream receive window used (buffered + unacked)
	unacked uint32 // read, not yet granted back
	eof     bool   // END_STREAM received
	rerr    error  // the stream was reset / the connection closed
	closed  bool   // Body.Close called

	// response (the handler's goroutine)
	hdr      http.Header
	code     int
	wroteHdr bool // WriteHeader called (or implied)
	sentHdr  bool // HEADERS written
	flushed  bool // Flush called
	out      []byte
	werr     error
}

// delegate hands cl (header fields, validated) to the Fallback (reading
// goroutine).
func (c *conn) delegate(cl *Call, fields []hpack.HeaderField) error {
	d := &delegated{c: c, cl: cl, hdr: http.Header{}, more: make(chan struct{}), eof: cl.endStream}
	dc := c.delegConn()
	d.ctx, d.end = context.WithCancel(dc.base)
	// Set before mu: closeNow and dropStream read them after taking it.
	cl.ctx, cl.cancel = d.ctx, d.abort
	c.mu.Lock()
	if !c.admitLocked(cl, d.abort) { // at the cap, earlyStatus aborts d again (a no-op)
		return nil
	}
	c.ndeleg++
	c.s.wg.Add(1)
	c.mu.Unlock()
	cl.d = d // the reading goroutine's (onData, endOfRequest)

	// One map sized for the regular fields and one backing array for the
	// first value of every key (a key's slice has capacity 1: a second
	// value is appended to a copy), as onHeaders builds the metadata.
	n := 0
	for _, hf := range fields {
		if !strings.HasPrefix(hf.Name, ":") {
			n++
		}
	}
	h := make(http.Header, n)
	vals := make([]string, 0, n)
	var host string
	for _, hf := range fields {
		if strings.HasPrefix(hf.Name, ":") {
			if hf.Name == ":authority" {
				host = hf.Value
			}
			continue
		}
		k := textproto.CanonicalMIMEHeaderKey(hf.Name)
		if old, ok := h[k]; ok {
			h[k] = append(old, hf.Value)
			continue
		}
		vals = append(vals, hf.Value)
		h[k] = vals[len(vals)-1 : len(vals) : len(vals)]
	}
	req := &http.Request{
		Method: http.MethodPost, Proto: "HTTP/2.0", ProtoMajor: 2,
		URL: &url.URL{Path: cl.method}, RequestURI: cl.method, Host: host,
		Header: h, Body: (*body)(d), ContentLength: -1,
		RemoteAddr: dc.remote, TLS: dc.tls,
	}
	req = req.WithContext(d.ctx)
	go d.serve(req)
	return nil
}

// delegConn is what every delegated request of a connection shares, made
// on its first (reading goroutine): the context carrying the local
// address, the peer's address string and the TLS state (one pointer per
// connection, as x/net's HTTP/2 server shares it).
type delegConn struct {
	base   context.Context
	remote string
	tls    *tls.ConnectionState
}

// delegConn returns the connection's delegConn (reading goroutine).
func (c *conn) delegConn() *delegConn {
	if c.deleg == nil {
		dc := &delegConn{
			base:   context.WithValue(c.base, http.LocalAddrContextKey, c.peer.LocalAddr),
			remote: c.peer.Addr.String(),
		}
		if ti, ok := c.peer.AuthInfo.(credentials.TLSInfo); ok {
			dc.tls = &ti.State
		}
		c.deleg = dc
	}
	return c.deleg
}

// serve runs the Fallback and ends the stream.
func (d *delegated) serve(req *http.Request) {
	defer d.c.s.wg.Done()
	d.c.s.cfg.Fallback.ServeHTTP(d, req)
	d.finish()
}

// abort cancels the stream's context and wakes its body reader (the
// stream was reset, the connection closed, or the stream ended).
func (d *delegated) abort() {
	d.end()
	d.mu.Lock()
	if d.rerr == nil {
		d.rerr = errStreamGone
		d.signal()
	}
	d.mu.Unlock()
}

// signal wakes a waiting Body.Read (mu held).
func (d *delegated) signal() {
	if d.waiting {
		close(d.more)
		d.more = make(chan struct{})
		d.waiting = false
	}
}

// onData takes a DATA frame of the stream (reading goroutine): n is its
// flow-controlled length (padding included).
func (c *conn) onDelegatedData(cl *Call, p []byte, n int64, end bool) {
	d := cl.d
	d.mu.Lock()
	if d.eof {
		d.mu.Unlock()
		c.resetStream(cl, http2.ErrCodeStreamClosed)
		return
	}
	d.used += n
	if d.used > int64(c.s.cfg.StreamWindow) {
		d.mu.Unlock()
		c.resetStream(cl, http2.ErrCodeFlowControl)
		return
	}
	d.unacked += uint32(n - int64(len(p))) // padding: consumed at once
	if d.closed || d.rerr != nil {
		d.unacked += uint32(len(p)) // nobody reads: dropped
	} else {
		d.buf = append(d.buf, p...)
	}
	d.eof = end
	d.signal()
	incr := d.grantLocked()
	d.mu.Unlock()
	d.sendWindow(incr)
}

// endBody: the client half-closed the stream with trailers (reading
// goroutine).
func (d *delegated) endBody() {
	d.mu.Lock()
	d.eof = true
	d.signal()
	d.mu.Unlock()
}

// grantLocked returns the stream window to grant back: what was consumed
// once it is a quarter of the window (mu held); 0: nothing yet.
func (d *delegated) grantLocked() uint32 {
	if d.eof || d.unacked < uint32(d.c.s.cfg.StreamWindow/4) {
		return 0
	}
	incr := d.unacked
	d.used -= int64(incr)
	d.unacked = 0
	return incr
}

func (d *delegated) sendWindow(incr uint32) {
	if incr == 0 {
		return
	}
	c := d.c
	c.lockWrite()
	if c.alive(d.cl) {
		_ = c.flush(appendWindowUpdate(c.getBuf(), d.cl.id, incr))
	}
	c.unlockWrite()
}

// alive reports whether cl's stream is still open on a live connection.
func (c *conn) alive(cl *Call) bool {
	c.mu.Lock()
	ok := !c.closed && c.streams[cl.id] == cl && !cl.reset.Load()
	c.mu.Unlock()
	return ok
}

// body is the request body of a delegated stream.
type body delegated

func (b *body) Read(p []byte) (int, error) {
	d := (*delegated)(b)
	d.mu.Lock()
	for {
		switch {
		case d.closed:
			d.mu.Unlock()
			return 0, errBodyClosed
		case d.rerr != nil:
			d.mu.Unlock()
			return 0, d.rerr
		case d.off < len(d.buf):
		case d.eof:
			d.mu.Unlock()
			return 0, io.EOF
		default:
			ch := d.more
			d.waiting = true
			d.mu.Unlock()
			<-ch
			d.mu.Lock()
			continue
		}
		break
	}
	n := copy(p, d.buf[d.off:])
	d.off += n
	if d.off == len(d.buf) {
		d.buf, d.off = d.buf[:0], 0
	}
	d.unacked += uint32(n)
	incr := d.grantLocked()
	d.mu.Unlock()
	d.sendWindow(incr)
	return n, nil
}

func (b *body) Close() error {
	d := (*delegated)(b)
	d.mu.Lock()
	if !d.closed {
		d.closed = true
		d.unacked += uint32(len(d.buf) - d.off)
		d.buf, d.off = nil, 0
		d.signal()
	}
	incr := d.grantLocked()
	d.mu.Unlock()
	d.sendWindow(incr)
	return nil
}

var errBodyClosed = errors.New("http2: request body closed by handler")

// Header is the response header (http.ResponseWriter).
func (d *delegated) Header() http.Header { return d.hdr }

// WriteHeader sets the response status (http.ResponseWriter); the
// HEADERS frame leaves with the first Flush or body bytes.
func (d *delegated) WriteHeader(code int) {
	if d.wroteHdr {
		return
	}
	d.wroteHdr, d.code = true, code
}

// flushAt: buffered response bytes past this are written without waiting
// for Flush.
const flushAt = 32 << 10

// Write buffers response body bytes (http.ResponseWriter).
func (d *delegated) Write(p []byte) (int, error) {
	if d.werr != nil {
		return 0, d.werr
	}
	d.WriteHeader(http.StatusOK)
	d.out = append(d.out, p...)
	if len(d.out) >= flushAt {
		if err := d.send(); err != nil {
			return 0, err
		}
	}
	return len(p), nil
}

// Flush writes the headers and the buffered body (http.Flusher). Headers
// alone that were not asked for by WriteHeader wait: if the handler then
// ends the stream, they leave with the trailers as one trailers-only
// HEADERS frame (what grpc-go's own transport sends for a status without
// messages).
func (d *delegated) Flush() {
	d.flushed = true
	if !d.wroteHdr && len(d.out) == 0 {
		return
	}
	_ = d.send()
}

// send writes HEADERS (once) and the buffered body, waiting for send
// window.
func (d *delegated) send() error {
	if d.werr != nil {
		return d.werr
	}
	d.WriteHeader(http.StatusOK)
	if !d.sentHdr {
		if d.werr = d.writeHeaders(false); d.werr != nil {
			return d.werr
		}
	}
	if d.werr = d.writeData(); d.werr != nil {
		d.abort()
	}
	return d.werr
}

// writeHeaders writes the response HEADERS; trailersOnly: with the
// trailers, ending the stream.
func (d *delegated) writeHeaders(trailersOnly bool) error {
	c, cl := d.c, d.cl
	c.lockWrite()
	defer c.unlockWrite()
	if !c.alive(cl) {
		return errStreamGone
	}
	c.hbuf.b = c.hbuf.b[:0]
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: strconv.Itoa(d.code)})
	for k, vs := range d.hdr {
		if k == "Trailer" || strings.HasPrefix(k, http.TrailerPrefix) || connSpecific(k) || (trailersOnly && d.declared(k)) {
			continue
		}
		lk := strings.ToLower(k)
		for _, v := range vs {
			_ = c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
		}
	}
	if trailersOnly {
		d.encodeTrailers()
	}
	d.sentHdr = true
	c.wroteStream.Store(true)
	b := appendHeaderBlock(c.getBuf(), cl.id, c.hbuf.b, trailersOnly, c.peerMaxFrm)
	if trailersOnly {
		if !d.halfClosed() {
			b = appendRST(b, cl.id, http2.ErrCodeNo)
		}
		c.streamEnding(cl) // the slot is free before the client reads the end
	}
	return c.flush(b)
}

// declared reports whether k (canonical) is declared in "Trailer".
func (d *delegated) declared(k string) bool {
	for _, decl := range d.hdr["Trailer"] {
		for t := range strings.SplitSeq(decl, ",") {
			if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(t)) == k {
				return true
			}
		}
	}
	return false
}

// halfClosed reports whether the client ended its side of the stream.
func (d *delegated) halfClosed() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.eof
}

// connSpecific: header fields HTTP/2 forbids (RFC 9113 8.2.2).
func connSpecific(k string) bool {
	switch k {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding", "Upgrade":
		return true
	}
	return false
}

// writeData writes d.out as DATA frames as the send windows allow,
// waiting for WINDOW_UPDATEs at most WriteTimeout at a time.
func (d *delegated) writeData() error {
	c, cl := d.c, d.cl
	var timer *time.Timer
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for len(d.out) > 0 {
		c.lockWrite()
		if !c.alive(cl) {
			c.unlockWrite()
			return errStreamGone
		}
		b := c.getBuf()
		for len(d.out) > 0 && len(b) < 64<<10 {
			n := min(int64(len(d.out)), c.connSendWin, cl.sendWin, int64(c.peerMaxFrm))
			if n <= 0 {
				break
			}
			b = appendFrameHeader(b, int(n), http2.FrameData, 0, cl.id)
			b = append(b, d.out[:n]...)
			d.out = d.out[n:]
			c.connSendWin -= n
			cl.sendWin -= n
		}
		if len(b) > 0 {
			c.wroteStream.Store(true)
			err := c.flush(b)
			c.unlockWrite()
			if err != nil {
				return err
			}
			continue
		}
		// No window: wait for a WINDOW_UPDATE (or SETTINGS).
		if c.winCh == nil {
			c.winCh = make(chan struct{})
		}
		ch := c.winCh
		c.unlockWrite()
		if timer == nil {
			timer = time.NewTimer(c.s.cfg.WriteTimeout)
		} else {
			timer.Reset(c.s.cfg.WriteTimeout)
		}
		select {
		case <-ch:
		case <-d.ctx.Done():
			return errStreamGone
		case <-timer.C:
			c.lockWrite()
			live := c.alive(cl)
			if live {
				_ = c.flush(appendRST(c.getBuf(), cl.id, http2.ErrCodeCancel))
			}
			c.unlockWrite()
			c.count(ReasonStalled)
			return errStalled
		}
	}
	d.out = d.out[:0]
	return nil
}

var errStalled = errors.New("grpcserve: peer's flow-control window stayed closed for the write timeout")

// ReasonStalled counts delegated streams reset because the peer granted
// no send window for WriteTimeout.
const ReasonStalled = "stalled"

// wakeWriters wakes response writes waiting for send window (wmu held).
func (c *conn) wakeWriters() {
	if c.winCh != nil {
		close(c.winCh)
		c.winCh = nil
	}
}

// finish ends the stream once the Fallback returned: buffered body,
// trailers (or, with no HEADERS sent yet and no body, one trailers-only
// HEADERS frame), RST_STREAM NO_ERROR when the client has not
// half-closed; or RST_STREAM INTERNAL_ERROR when nothing was written.
func (d *delegated) finish() {
	c, cl := d.c, d.cl
	switch {
	case d.werr != nil:
	case !d.wroteHdr && !d.flushed:
		c.lockWrite()
		if c.alive(cl) {
			_ = c.flush(appendRST(c.getBuf(), cl.id, http2.ErrCodeInternal))
		}
		c.unlockWrite()
	case !d.sentHdr && len(d.out) == 0:
		if d.code == 0 {
			d.code = http.StatusOK
		}
		_ = d.writeHeaders(true)
	default:
		if err := d.send(); err != nil {
			break
		}
		c.lockWrite()
		if c.alive(cl) {
			b := c.getBuf()
			c.hbuf.b = c.hbuf.b[:0]
			if d.encodeTrailers() > 0 {
				b = appendHeaderBlock(b, cl.id, c.hbuf.b, true, c.peerMaxFrm)
			} else {
				b = appendFrameHeader(b, 0, http2.FrameData, http2.FlagDataEndStream, cl.id)
			}
			if !d.halfClosed() {
				b = appendRST(b, cl.id, http2.ErrCodeNo)
			}
			c.wroteStream.Store(true)
			c.streamEnding(cl) // the slot is free before the client reads the end
			_ = c.flush(b)
		}
		c.unlockWrite()
	}
	c.mu.Lock()
	c.inflight--
	c.ndeleg--
	c.handlerDone(cl)
	if c.streams[cl.id] == cl {
		delete(c.streams, cl.id)
		c.streamClosedLocked()
	}
	drained := c.goAway && len(c.streams) == 0 && !c.closed
	c.mu.Unlock()
	d.abort()
	d.out = nil
	if drained {
		c.closeDrained()
	}
}

// encodeTrailers encodes the trailers into c.hbuf (wmu held): keys
// declared in "Trailer" and keys prefixed http.TrailerPrefix. It returns
// how many fields it wrote.
func (d *delegated) encodeTrailers() int {
	c := d.c
	n := 0
	put := func(k string, vs []string) {
		lk := strings.ToLower(k)
		for _, v := range vs {
			_ = c.henc.WriteField(hpack.HeaderField{Name: lk, Value: v})
			n++
		}
	}
	for _, decl := range d.hdr["Trailer"] {
		for k := range strings.SplitSeq(decl, ",") {
			k = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(k))
			if k == "" || k == "Trailer" || connSpecific(k) {
				continue
			}
			put(k, d.hdr[k])
		}
	}
	for k, vs := range d.hdr {
		if t, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			put(t, vs)
		}
	}
	return n
}
