package grpcdirect

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Reading a connection (the read role). While calls are in flight, no
// goroutine is dedicated to reading: a caller waiting for its reply reads
// the connection itself (it leads), completing whatever streams the frames
// finish; when its own call completes it hands the role to another waiting
// caller, if any, and returns. A lone call therefore makes no goroutine
// hand-off at all: its caller writes the request, reads the reply and
// returns. The connection's background goroutine (bgLoop) reads only when
// nobody leads: after idleRead without a leader (so PINGs, SETTINGS and
// GOAWAY of an idle connection are answered), or at once when a writer
// waits for a WINDOW_UPDATE. A caller that finds it reading asks it to
// yield.
//
// A reader is interrupted by an expired read deadline (its context ended,
// or the background reader is asked to yield); frames are taken from the
// buffered reader only once complete (readFrame), so an interrupted read
// loses nothing.

// read role states (conn.rstate).
const (
	rsNone = iota
	rsLeader
	rsBG
)

// idleRead is how long a connection goes without a reading caller before
// its background goroutine reads.
const idleRead = 20 * time.Millisecond

// longAgo is a read deadline in the past: it interrupts a blocked read.
var longAgo = time.Unix(1, 0)

func (c *conn) kick() { _ = c.nc.SetReadDeadline(longAgo) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout())
}

// readHeader returns the next frame's header once the whole frame is
// buffered (a deadline interrupting the wait consumes nothing); its
// payload is then read by readPayload.
func (c *conn) readHeader() (http2.FrameHeader, error) {
	hdr, err := c.br.Peek(9)
	if err != nil {
		return http2.FrameHeader{}, err
	}
	if n := int(hdr[0])<<16 | int(hdr[1])<<8 | int(hdr[2]); n <= defaultMaxFrame {
		if _, err := c.br.Peek(9 + n); err != nil {
			return http2.FrameHeader{}, err
		}
	}
	return c.fr.ReadFrameHeader() // an oversized frame: the framer reports it
}

// readOne reads and handles one frame. interrupted: a read deadline
// expired (cleared again); the connection is fine.
func (c *conn) readOne() (interrupted bool) {
	fh, err := c.readHeader()
	var f http2.Frame
	if err == nil {
		var fast bool
		if fast, err = c.fastFrame(fh); fast {
			if err != nil {
				c.close(err)
			}
			return false
		}
		f, err = c.fr.ReadFrameForHeader(fh)
	}
	if err != nil {
		if isTimeout(err) {
			select {
			case <-c.dead:
			default:
				_ = c.nc.SetReadDeadline(time.Time{})
				return true
			}
		}
		var se http2.StreamError
		if errors.As(err, &se) {
			c.resetStream(se.StreamID, se.Code, status.New(codes.Internal, "grpcdirect: "+se.Error()))
			return false
		}
		c.close(fmt.Errorf("read: %w", err))
		return false
	}
	if err := c.handle(f); err != nil {
		c.close(err)
	}
	return false
}

// fastFrame handles the frames every call brings (HEADERS, and the PING
// and WINDOW_UPDATE a grpc-go server sends for most requests) straight
// from the read buffer: x/net's Framer allocates a frame for each
// (SetReuseFrames reuses DATA frames only). It takes only well-formed
// frames (false, nothing read otherwise: the Framer parses the rest and
// reports what is wrong with them). The Framer has checked the frame's
// size and order (ReadFrameHeader); the payload is buffered (readHeader).
// err is a connection error.
func (c *conn) fastFrame(fh http2.FrameHeader) (fast bool, err error) {
	n := int(fh.Length)
	switch fh.Type {
	case http2.FramePing:
		if n != 8 || fh.StreamID != 0 {
			return false, nil
		}
	case http2.FrameWindowUpdate:
		if n != 4 {
			return false, nil
		}
	case http2.FrameHeaders:
		if fh.StreamID == 0 || fh.Flags.Has(http2.FlagHeadersPadded) || fh.Flags.Has(http2.FlagHeadersPriority) {
			return false, nil
		}
	default:
		return false, nil
	}
	p, perr := c.br.Peek(n)
	if perr != nil {
		return false, nil
	}
	switch fh.Type {
	case http2.FramePing:
		c.lastRead.Store(time.Now().UnixNano())
		data := [8]byte(p)
		_, _ = c.br.Discard(n)
		return true, c.onPing(fh.Flags.Has(http2.FlagPingAck), data)
	case http2.FrameWindowUpdate:
		inc := binary.BigEndian.Uint32(p) & 0x7fffffff
		if inc == 0 {
			return false, nil // an error: the Framer's
		}
		c.lastRead.Store(time.Now().UnixNano())
		_, _ = c.br.Discard(n)
		return true, c.onWindowUpdate(fh.StreamID, inc)
	}
	// HEADERS: the fragment is read from the buffer, which nothing reads
	// until it is handled.
	c.lastRead.Store(time.Now().UnixNano())
	err = c.onHeadersFrame(fh.StreamID, fh.Flags.Has(http2.FlagHeadersEndStream), fh.Flags.Has(http2.FlagHeadersEndHeaders), p)
	_, _ = c.br.Discard(n)
	return true, err
}

// await waits for cl's completion, leading the reads when nobody else
// does.
func (c *conn) await(ctx context.Context, cl *call) error {
	c.mu.Lock()
	if c.streams[cl.id] != cl { // already completed (or failed)
		c.mu.Unlock()
		<-cl.done
		return cl.result()
	}
	kick := false
	switch c.rstate {
	case rsNone:
		c.rstate, c.leaderCall = rsLeader, cl
		c.mu.Unlock()
		return c.lead(ctx, cl)
	case rsBG:
		if !c.yield {
			c.yield, kick = true, true
		}
	}
	cl.waiting = true
	c.mu.Unlock()
	if kick {
		c.kick()
	}
	select {
	case <-cl.done:
		c.dropRole(cl)
		return cl.result()
	case <-cl.leadCh:
		return c.lead(ctx, cl)
	case <-ctx.Done():
		c.dropRole(cl)
		return c.giveUp(ctx, cl)
	}
}

// dropRole releases the read role if it was handed to cl meanwhile.
func (c *conn) dropRole(cl *call) {
	c.mu.Lock()
	cl.waiting = false
	if c.leaderCall == cl {
		<-cl.leadCh
		c.rstate, c.leaderCall = rsNone, nil
		c.passRoleLocked()
	}
	c.mu.Unlock()
}

// giveUp ends a call whose context ended: reset its stream, or take the
// completion that raced it.
func (c *conn) giveUp(ctx context.Context, cl *call) error {
	if c.abandon(cl, http2.ErrCodeCancel) {
		return status.FromContextError(ctx.Err()).Err()
	}
	<-cl.done // completed first
	return cl.result()
}

// lead reads frames, holding the read role, until cl completes or ctx
// ends; then it passes the role on.
func (c *conn) lead(ctx context.Context, cl *call) error {
	stop := context.AfterFunc(ctx, c.kickFn)
	own := false
	for !own {
		select {
		case <-cl.done:
			own = true
			continue
		default:
		}
		if ctx.Err() != nil {
			break
		}
		c.readOne()
	}
	stop()
	c.rb.Flush() // before the role goes
	c.mu.Lock()
	c.rstate, c.leaderCall = rsNone, nil
	c.passRoleLocked()
	c.mu.Unlock()
	if own {
		return cl.result()
	}
	return c.giveUp(ctx, cl)
}

// passRoleLocked gives a free read role to a waiting caller, or leaves it
// to the background reader (c.mu held).
func (c *conn) passRoleLocked() {
	if c.rstate != rsNone || c.err != nil {
		return
	}
	async := false
	for _, s := range c.streams {
		if s.waiting {
			s.waiting = false
			c.rstate, c.leaderCall = rsLeader, s
			s.leadCh <- struct{}{}
			return
		}
		async = async || s.async
	}
	if async {
		c.needReaderLocked() // pending async calls: the background goroutine reads
	}
	// No timer is re-armed per call (a timer earlier than a P's others
	// wakes a sleeping thread): the background goroutine checks every
	// idleRead while callers lead.
	c.lastLead.Store(time.Now().UnixNano())
}

// needReaderLocked makes the background goroutine read now if nobody
// does (a writer waits for a WINDOW_UPDATE; c.mu held).
func (c *conn) needReaderLocked() {
	if c.rstate == rsNone {
		select {
		case c.bgWake <- struct{}{}:
		default:
		}
	}
}

// bgLoop is the connection's goroutine: it reads while no caller does.
func (c *conn) bgLoop() {
	if c.e.cfg.KeepaliveTime > 0 {
		stop := make(chan struct{})
		defer close(stop)
		c.e.wg.Add(1)
		go c.keepalive(stop)
	}
	t := time.NewTimer(0) // read at once: the server's SETTINGS ack and so on
	defer t.Stop()
	for {
		select {
		case <-c.dead:
			return
		case <-c.bgWake:
		case <-t.C:
		}
		c.flushPending()
		c.mu.Lock()
		if c.err != nil {
			c.mu.Unlock()
			return
		}
		if c.rstate != rsNone {
			c.mu.Unlock()
			t.Reset(idleRead) // a caller reads: look again later
			continue
		}
		if since := time.Duration(time.Now().UnixNano() - c.lastLead.Load()); since < idleRead && len(c.streams) == 0 {
			c.mu.Unlock()
			t.Reset(idleRead - since) // a caller read moments ago; traffic may go on
			continue
		}
		c.rstate, c.yield = rsBG, false
		c.mu.Unlock()
		for {
			if c.readOne() {
				c.rb.Flush() // before the role may go
				c.mu.Lock()
				if c.yield {
					c.rstate, c.yield = rsNone, false
					c.passRoleLocked()
					c.mu.Unlock()
					t.Reset(idleRead)
					break
				}
				c.mu.Unlock()
				continue
			}
			select {
			case <-c.dead:
				c.rb.Flush()
				return
			default:
			}
		}
	}
}
