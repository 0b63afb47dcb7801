package grpcserve

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Reading frames. x/net's Framer allocates a frame for every frame it
// parses except DATA (SetReuseFrames), and for a HEADERS frame a
// MetaHeadersFrame whose field list grows one field at a time: about a
// dozen allocations per unary call of a grpc-go client (its HEADERS, and
// the BDP PING and WINDOW_UPDATE it sends with most calls). readFrame
// parses those three kinds itself, as grpcdirect does on the client side:
// the Framer still reads every frame header (ReadFrameHeader: size limit,
// HEADERS/CONTINUATION order), and every frame that is not plainly
// well-formed (a padded or prioritised HEADERS, a header block continued
// in CONTINUATION frames, a PING on a stream or of the wrong size, a
// WINDOW_UPDATE of the wrong size, a HEADERS frame on stream 0, a header
// block more than twice the header lists allowed) goes to the Framer for
// its usual verdict. A header block read here is checked as the Framer
// checks it (readMetaFrame): field names and values, pseudo-header order,
// duplicates and kinds, the header list size (Truncated), HPACK errors.

// hdrScratch is what decoding one header block needs: the block, the
// decoded fields, and the Framer's per-block checks. Pooled: a connection
// holds one only while it handles a HEADERS frame.
type hdrScratch struct {
	blk     []byte
	fields  []hpack.HeaderField
	dec     *hpack.Decoder
	emitFn  func(hpack.HeaderField) // emit, made once per scratch
	remain  uint32                  // header list bytes left (the Framer's headersRemainSize)
	tremain uint32                  // the same for "trailer" fields (trailersRemainSize)
	regular bool                    // a regular field was seen
	trunc   bool                    // the header list exceeded the limit (MetaHeadersFrame.Truncated)
	invalid error                   // a field the Framer rejects
}

// maxScratchBlock is the largest header block buffer kept in the pool.
const maxScratchBlock = 4 << 10

var hdrPool = sync.Pool{New: func() any {
	h := &hdrScratch{blk: make([]byte, 0, 512), fields: make([]hpack.HeaderField, 0, 16)}
	h.emitFn = h.emit
	return h
}}

func ignoreField(hpack.HeaderField) {}

// emit takes one decoded field, as the Framer's readMetaFrame does.
func (h *hdrScratch) emit(hf hpack.HeaderField) {
	if !httpguts.ValidHeaderFieldValue(hf.Value) {
		// The value is not named: it may be sensitive.
		h.invalid = fmt.Errorf("invalid header field value for %q", hf.Name)
	}
	if strings.HasPrefix(hf.Name, ":") {
		if h.regular {
			h.invalid = errPseudoAfterRegular
		}
	} else {
		h.regular = true
		if !validWireName(hf.Name) {
			h.invalid = fmt.Errorf("invalid header field name %q", hf.Name)
		}
	}
	if h.invalid != nil {
		h.dec.SetEmitEnabled(false)
		return
	}
	remain, size := &h.remain, hf.Size()
	if hf.Name == "trailer" {
		remain = &h.tremain
		n := strings.Count(hf.Value, ",") + 1
		size = uint32(len(hf.Value)-n+1) + uint32(n)*hpack.HeaderField{}.Size()
	}
	if size > *remain {
		h.dec.SetEmitEnabled(false)
		h.trunc, h.remain, h.tremain = true, 0, 0
		return
	}
	*remain -= size
	h.fields = append(h.fields, hf)
}

var (
	errPseudoAfterRegular = fmt.Errorf("pseudo header field after regular")
	errMixPseudo          = fmt.Errorf("mix of request and response pseudo headers")
)

// validWireName is x/net's validWireHeaderFieldName: a token, no
// uppercase.
func validWireName(v string) bool {
	if v == "" {
		return false
	}
	for _, r := range v {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// checkPseudos is MetaHeadersFrame.checkPseudos: known pseudo-headers,
// no duplicates, not both request and response ones.
func checkPseudos(fields []hpack.HeaderField) error {
	var req, resp bool
	for i, hf := range fields {
		if !strings.HasPrefix(hf.Name, ":") {
			break
		}
		switch hf.Name {
		case ":method", ":path", ":scheme", ":authority", ":protocol":
			req = true
		case ":status":
			resp = true
		default:
			return fmt.Errorf("invalid pseudo-header %q", hf.Name)
		}
		for _, hf2 := range fields[:i] {
			if hf.Name == hf2.Name {
				return fmt.Errorf("duplicate pseudo-header %q", hf.Name)
			}
		}
	}
	if req && resp {
		return errMixPseudo
	}
	return nil
}

// maxHeaderList is the Framer's header list limit (0: its default).
func (c *conn) maxHeaderList() uint32 {
	if m := c.fr.MaxHeaderListSize; m != 0 {
		return m
	}
	return 16 << 20
}

// readFrame reads and handles the next frame. A frame the Framer rejects
// with a stream error is answered by onStreamError; any error returned
// ends the connection.
func (c *conn) readFrame() error {
	fh, err := c.fr.ReadFrameHeader()
	if err != nil {
		return c.onStreamError(err)
	}
	n := fh.Length
	switch fh.Type {
	case http2.FramePing:
		if n != 8 || fh.StreamID != 0 {
			break
		}
		if _, err := c.readPayload(c.ctl[:8]); err != nil {
			return err
		}
		c.readDone()
		return c.onPing(fh.Flags.Has(http2.FlagPingAck), [8]byte(c.ctl[:8]))
	case http2.FrameWindowUpdate:
		if n != 4 {
			break
		}
		if _, err := c.readPayload(c.ctl[:4]); err != nil {
			return err
		}
		inc := (uint32(c.ctl[0])<<24 | uint32(c.ctl[1])<<16 | uint32(c.ctl[2])<<8 | uint32(c.ctl[3])) & 0x7fffffff
		if inc == 0 {
			// The Framer's verdict: a connection error on stream 0, a
			// stream error without a cause (which onStreamError makes a
			// connection error) on a stream.
			return http2.ConnectionError(http2.ErrCodeProtocol)
		}
		c.readDone()
		return c.onWindowUpdate(fh.StreamID, inc)
	case http2.FrameHeaders:
		max := c.maxHeaderList()
		if fh.StreamID == 0 || !fh.Flags.Has(http2.FlagHeadersEndHeaders) ||
			fh.Flags.Has(http2.FlagHeadersPadded) || fh.Flags.Has(http2.FlagHeadersPriority) ||
			int64(n) > 4*int64(max) {
			break
		}
		return c.readHeaders(fh, max)
	}
	f, err := c.fr.ReadFrameForHeader(fh)
	if err != nil {
		return c.onStreamError(err)
	}
	c.readDone()
	return c.handle(f)
}

// readPayload reads a frame's payload into p (the Framer's io.ReadFull).
func (c *conn) readPayload(p []byte) (int, error) {
	return io.ReadFull(c.br, p)
}

// readDone notes that a frame was read (keepalive).
func (c *conn) readDone() {
	if c.s.cfg.KeepaliveTime > 0 {
		c.lastRead.Store(time.Now().UnixNano())
	}
}

// readHeaders reads and handles a HEADERS frame that carries a whole
// header block, unpadded, without priority.
func (c *conn) readHeaders(fh http2.FrameHeader, max uint32) error {
	h := hdrPool.Get().(*hdrScratch)
	defer h.release()
	n := int(fh.Length)
	if cap(h.blk) < n {
		h.blk = make([]byte, n)
	}
	h.blk = h.blk[:n]
	if _, err := c.readPayload(h.blk); err != nil {
		return err
	}
	h.dec = c.fr.ReadMetaHeaders
	h.remain, h.tremain, h.regular, h.trunc, h.invalid = max, max, false, false, nil
	h.dec.SetEmitEnabled(true)
	h.dec.SetMaxStringLength(int(min(uint64(max), uint64(^uint(0)>>1))))
	h.dec.SetEmitFunc(h.emitFn)
	_, err := h.dec.Write(h.blk)
	if err == nil {
		err = h.dec.Close()
	}
	h.dec.SetEmitFunc(ignoreField)
	if err != nil {
		return http2.ConnectionError(http2.ErrCodeCompression)
	}
	if h.invalid == nil {
		h.invalid = checkPseudos(h.fields)
	}
	if h.invalid != nil {
		return c.onStreamError(http2.StreamError{StreamID: fh.StreamID, Code: http2.ErrCodeProtocol, Cause: h.invalid})
	}
	c.readDone()
	return c.onHeaders(fh.StreamID, fh.Flags.Has(http2.FlagHeadersEndStream), h.trunc, h.fields)
}

// release puts h back in the pool, holding no field or decoder.
func (h *hdrScratch) release() {
	clear(h.fields)
	h.fields, h.dec, h.invalid = h.fields[:0], nil, nil
	if cap(h.blk) > maxScratchBlock {
		h.blk = make([]byte, 0, 512)
	}
	hdrPool.Put(h)
}
