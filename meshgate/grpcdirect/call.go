package grpcdirect

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/encoding"
	_ "google.golang.org/grpc/encoding/gzip" // gzip responses (grpc-accept-encoding: gzip)
	"google.golang.org/grpc/mem"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/protobuf/proto"

	"github.com/meshgate/meshgate/meshgate/connio"
	"github.com/meshgate/meshgate/meshgate/grpcwire"
	"github.com/meshgate/meshgate/meshgate/rawcodec"
)

// call is one unary call's state, pooled. The caller owns it until its
// stream is registered on a conn; then the conn's reader (whoever holds
// the read role) writes the response fields until it hands the call back
// on done.
type call struct {
	done    chan struct{} // the completion: the reader's (or close's) one hand-off
	leadCh  chan struct{} // the read role handed to this waiting caller (read.go)
	waiting bool          // under c.mu: its caller waits and may take the read role
	c       *conn
	id      uint32

	// options
	hdrAddr, trlAddr *metadata.MD
	omd              *metadata.MD // OutgoingMD: the request metadata (nil: the context's)
	store            *MDStore     // MDStore: refill the targets in place
	peerAddr         *peer.Peer
	maxRecv, maxSend int
	static           bool // grpc.StaticMethod: metrics name the method

	// request: the 5-byte prefix, then req's buffers (a single one in
	// reqOne: rawcodec.Message.TakeInto)
	req       mem.BufferSlice
	reqOne    [1]mem.Buffer
	prefix    [5]byte
	total     int // prefix + message
	sent      int
	bufIdx    int
	bufOff    int
	sendWin   int64 // under c.mu
	tbuf      []byte
	deadline  time.Time
	fhdr      [9]byte
	abandoned bool

	// response (reader-written)
	gotHeaders bool
	header     metadata.MD // hmd once received (nil: none)
	trailer    metadata.MD // tmd once received (nil: none)
	// the call's own metadata maps, kept across pooled lives (md.go);
	// a map handed out to a caller (no MDStore) is not kept
	hmd, tmd   metadata.MD
	own        MDStore
	nonGRPC    *status.Status
	encoding   string // the response's grpc-encoding
	compressed bool   // the message has the compressed flag
	msgs       int
	pre        [5]byte
	preN       int
	msgLen     int
	msg        *[]byte // pooled buffer: msgLen once the whole message arrived (growMsg)
	msgN       int
	unacked    uint32
	st         *status.Status // final status; nil with ended: OK
	ended      bool
	err        error

	// an asynchronous call (async.go)
	async  bool
	onDone func(error)
	// StartIn's: the starter's write batch (taken by the first write) and
	// the callback that also gets the completing reader's batch
	batch    *connio.Batch
	onDoneIn func(error, *connio.Batch)
	reply    any
	actx     context.Context // outgoing metadata; metrics
	method   string
	rec      callRecord
	attempt  int
	// under c.mu: its starter is still writing it; a completion meanwhile
	// is left to the starter (deferred)
	writing, deferred bool
}

var callPool = sync.Pool{New: func() any { return &call{done: make(chan struct{}, 1), leadCh: make(chan struct{}, 1)} }}

func getCall() *call { return callPool.Get().(*call) }

func putCall(cl *call) {
	if cl.abandoned {
		// The reader may still hold it (a cancelled stream); let it go.
		cl.req.Free()
		return
	}
	cl.req.Free()
	cl.freeMsg()
	*cl = call{done: cl.done, leadCh: cl.leadCh, tbuf: cl.tbuf[:0], hmd: cl.hmd, tmd: cl.tmd, own: cl.own}
	callPool.Put(cl)
}

func (cl *call) freeMsg() {
	if cl.msg != nil {
		rawcodec.BufferPool.Put(cl.msg)
		cl.msg = nil
	}
}

// reset prepares a refused call for a retry on another conn.
func (cl *call) reset() {
	cl.freeMsg()
	cl.c, cl.id, cl.sent, cl.bufIdx, cl.bufOff, cl.sendWin, cl.waiting = nil, 0, 0, 0, 0, 0, false
	cl.gotHeaders, cl.header, cl.trailer, cl.nonGRPC, cl.encoding, cl.compressed = false, nil, nil, nil, "", false
	cl.msgs, cl.preN, cl.msgLen, cl.msgN, cl.unacked, cl.st, cl.ended, cl.err = 0, 0, 0, 0, 0, nil, false, nil
}

func (cl *call) applyOpts(e *Endpoint, opts []grpc.CallOption) {
	cl.maxRecv, cl.maxSend = e.cfg.MaxRecvMsgSize, e.cfg.MaxSendMsgSize
	for _, o := range opts {
		switch o := o.(type) {
		case grpc.HeaderCallOption:
			cl.hdrAddr = o.HeaderAddr
		case grpc.TrailerCallOption:
			cl.trlAddr = o.TrailerAddr
		case grpc.PeerCallOption:
			cl.peerAddr = o.PeerAddr
		case grpc.MaxRecvMsgSizeCallOption:
			cl.maxRecv = o.MaxRecvMsgSize
		case grpc.MaxSendMsgSizeCallOption:
			cl.maxSend = o.MaxSendMsgSize
		case grpc.StaticMethodCallOption:
			cl.static = true
		case *OutgoingMD:
			cl.omd = o.MD
		case *MDStore:
			cl.store = o
		}
	}
}

// marshal takes req's bytes (the raw codec) and checks the send limit.
func (cl *call) marshal(req any) error {
	var data mem.BufferSlice
	if m, ok := req.(*rawcodec.Message); ok {
		data = m.TakeInto(&cl.reqOne)
	} else {
		var err error
		if data, err = (rawcodec.Codec{}).Marshal(req); err != nil {
			return status.Errorf(codes.Internal, "grpc: error while marshaling: %v", err)
		}
	}
	cl.req = data
	n := data.Len()
	if n > cl.maxSend {
		return status.Errorf(codes.ResourceExhausted, "grpc: trying to send message larger than max (%d vs. %d)", n, cl.maxSend)
	}
	cl.prefix = [5]byte{0, byte(n >> 24), byte(n >> 16), byte(n >> 8), byte(n)}
	cl.total = 5 + n
	return nil
}

// writeFrame writes a DATA frame with the next n bytes of the request.
func (cl *call) writeFrame(w *bufio.Writer, n int, end bool) error {
	var flags byte
	if end {
		flags = byte(http2.FlagDataEndStream)
	}
	id := cl.id
	cl.fhdr = [9]byte{byte(n >> 16), byte(n >> 8), byte(n), byte(http2.FrameData), flags, byte(id>>24) & 0x7f, byte(id >> 16), byte(id >> 8), byte(id)}
	if _, err := w.Write(cl.fhdr[:]); err != nil {
		return err
	}
	for n > 0 {
		if cl.sent < 5 {
			k := min(n, 5-cl.sent)
			if _, err := w.Write(cl.prefix[cl.sent : cl.sent+k]); err != nil {
				return err
			}
			cl.sent += k
			n -= k
			continue
		}
		b := cl.req[cl.bufIdx].ReadOnlyData()[cl.bufOff:]
		k := min(n, len(b))
		if _, err := w.Write(b[:k]); err != nil {
			return err
		}
		cl.sent += k
		n -= k
		cl.bufOff += k
		if cl.bufOff == len(cl.req[cl.bufIdx].ReadOnlyData()) {
			cl.bufIdx++
			cl.bufOff = 0
		}
	}
	return nil
}

// appendData adds DATA payload to the response message (c.mu held); a
// non-nil status fails the stream.
func (cl *call) appendData(p []byte) *status.Status {
	if cl.nonGRPC != nil {
		return nil // the status is final at END_STREAM
	}
	for len(p) > 0 {
		if cl.preN < 5 {
			k := copy(cl.pre[cl.preN:], p)
			cl.preN += k
			p = p[k:]
			if cl.preN < 5 {
				return nil
			}
			cl.msgs++
			if cl.msgs > 1 {
				return status.New(codes.Internal, "cardinality violation: expected <EOF> for non server-streaming RPCs, but received another message")
			}
			switch cl.pre[0] {
			case 0:
			case 1: // as grpc-go's checkRecvPayload
				if cl.encoding == "" || cl.encoding == "identity" {
					return status.New(codes.Internal, "grpc: compressed flag set with identity or empty encoding")
				}
				if encoding.GetCompressor(cl.encoding) == nil {
					return status.Newf(codes.Internal, "grpc: Decompressor is not installed for grpc-encoding %q", cl.encoding)
				}
				cl.compressed = true
			default:
				return status.Newf(codes.Internal, "grpc: received unexpected payload format %d", cl.pre[0])
			}
			cl.msgLen = int(uint32(cl.pre[1])<<24 | uint32(cl.pre[2])<<16 | uint32(cl.pre[3])<<8 | uint32(cl.pre[4]))
			if cl.msgLen > cl.maxRecv {
				return status.Newf(codes.ResourceExhausted, "grpc: received message larger than max (%d vs. %d)", cl.msgLen, cl.maxRecv)
			}
			// The buffer follows the bytes that arrive, not the length
			// announced: a server that announces large messages and sends
			// nothing more costs at most msgChunk per stream.
			cl.msg = rawcodec.BufferPool.Get(min(cl.msgLen, msgChunk))
			cl.msgN = 0
			continue
		}
		if need := cl.msgN + len(p); need > len(*cl.msg) && len(*cl.msg) < cl.msgLen {
			cl.growMsg(need)
		}
		k := copy((*cl.msg)[cl.msgN:min(cl.msgLen, len(*cl.msg))], p)
		cl.msgN += k
		p = p[k:]
		if cl.msgN == cl.msgLen && len(p) > 0 {
			cl.preN = 0 // another message follows: counted (and refused) above
		}
	}
	return nil
}

// msgChunk is the most a response message's buffer holds before its
// bytes arrive; it doubles as they do, up to the announced length.
const msgChunk = 32 << 10 // one of grpc-go's buffer pool tiers (a 64 KiB Get takes a 1 MiB buffer)

// growMsg enlarges the message buffer to hold need bytes (at least double,
// at most msgLen), keeping what arrived.
func (cl *call) growMsg(need int) {
	n := min(max(need, 2*len(*cl.msg)), cl.msgLen)
	b := rawcodec.BufferPool.Get(n)
	copy(*b, (*cl.msg)[:cl.msgN])
	rawcodec.BufferPool.Put(cl.msg)
	cl.msg = b
}

// hdrState accumulates one decoded header block (the reader's, reused:
// md and its value slices are kept from block to block).
type hdrState struct {
	isGRPC     bool
	md         metadata.MD
	mds        MDStore
	ctErr      string
	grpcMsg    string
	code       codes.Code
	httpStatus string
	hdrErr     string
	encoding   string
	bad        *status.Status // malformed grpc-status
}

func (h *hdrState) reset(initial bool) {
	md, mds := h.md, h.mds
	if md == nil || len(md) > maxKeptKeys {
		md = make(metadata.MD)
	}
	mds.Clear(md)
	*h = hdrState{isGRPC: !initial, ctErr: "malformed header: missing HTTP content-type", code: codes.Unknown, md: md, mds: mds}
}

func (h *hdrState) add(k, v string) { h.mds.add(h.md, k, v) }

// field takes one decoded header field, as grpc-go's client does.
func (h *hdrState) field(hf hpack.HeaderField) {
	switch hf.Name {
	case "content-type":
		if !grpcwire.ValidContentType(hf.Value) {
			h.ctErr = fmt.Sprintf("transport: received unexpected content-type %q", hf.Value)
			break
		}
		h.ctErr = ""
		h.add(hf.Name, hf.Value)
		h.isGRPC = true
	case "grpc-encoding":
		h.encoding = hf.Value
	case "grpc-status":
		v, err := strconv.ParseInt(hf.Value, 10, 32)
		if err != nil {
			h.bad = status.New(codes.Unknown, fmt.Sprintf("transport: malformed grpc-status: %v", err))
			break
		}
		h.code = codes.Code(uint32(v))
	case "grpc-message":
		h.grpcMsg = grpcwire.DecodeMessage(hf.Value)
	case ":status":
		h.httpStatus = hf.Value
	default:
		if isReserved(hf.Name) {
			break
		}
		v, err := grpcwire.DecodeValue(hf.Name, hf.Value)
		if err != nil {
			h.hdrErr = fmt.Sprintf("transport: malformed %s: %v", hf.Name, err)
			break
		}
		h.add(hf.Name, v)
	}
}

// onHeaders ends a decoded HEADERS block of the call (the reader, before
// completion). done: the stream ended with status st; rst: reset it.
func (cl *call) onHeaders(h *hdrState, end, truncated bool) (st *status.Status, done, rst bool) {
	initial := !cl.gotHeaders
	if !initial && !end {
		return status.New(codes.Internal, "a HEADERS frame cannot appear in the middle of a stream"), true, true
	}
	if truncated {
		return status.New(codes.Internal, "peer header list size exceeded limit"), true, true
	}
	if cl.nonGRPC != nil {
		return cl.nonGRPC, end, end
	}
	if h.bad != nil {
		return h.bad, true, true
	}
	if !h.isGRPC {
		gc := codes.Internal
		var errs []string
		if h.httpStatus == "" {
			errs = append(errs, "malformed header: missing HTTP status")
		} else {
			sc, err := strconv.Atoi(h.httpStatus)
			if err != nil {
				return status.New(codes.Internal, fmt.Sprintf("transport: malformed http-status: %v", err)), true, true
			}
			if sc >= 100 && sc < 200 {
				if end {
					return status.New(codes.Internal, fmt.Sprintf("protocol error: informational header with status code %d must not have END_STREAM set", sc)), true, true
				}
				return nil, false, false
			}
			errs = append(errs, fmt.Sprintf("unexpected HTTP status code received from server: %d (%s)", sc, httpStatusText(sc)))
			if c, ok := httpCodes[sc]; ok {
				gc = c
			} else {
				gc = codes.Unknown
			}
		}
		if h.ctErr != "" {
			errs = append(errs, h.ctErr)
		}
		st := status.New(gc, strings.Join(errs, "; "))
		if end {
			return st, true, true
		}
		cl.nonGRPC = st
		return nil, false, false
	}
	if h.hdrErr != "" {
		return status.New(codes.Internal, h.hdrErr), true, true
	}
	if !end {
		cl.gotHeaders = true
		cl.header = nil
		if len(h.md) > 0 {
			cl.header = cl.keepMD(&cl.hmd, h.md)
		}
		cl.encoding = h.encoding // a compressed message is decompressed by its caller (finishReply)
		return nil, false, false
	}
	cl.trailer = cl.keepMD(&cl.tmd, h.md) // not nil: trailers came
	if h.code == codes.OK && h.md["grpc-status-details-bin"] == nil {
		return nil, true, false // OK: no status to build
	}
	return statusWithDetails(h.code, h.grpcMsg, h.md["grpc-status-details-bin"]), true, false
}

// statusWithDetails is grpc-go's status from grpc-status, grpc-message and
// grpc-status-details-bin.
func statusWithDetails(code codes.Code, msg string, details []string) *status.Status {
	if len(details) != 1 {
		return status.New(code, msg)
	}
	st := &spb.Status{}
	if err := proto.Unmarshal([]byte(details[0]), st); err != nil {
		return status.New(code, msg)
	}
	if st.Code == int32(code) {
		return status.FromProto(st)
	}
	return status.New(codes.Internal, fmt.Sprintf("grpc-status-details-bin mismatch: grpc-status=%v, grpc-message=%q, grpc-status-details-bin=%+v", code, msg, st))
}

// finish records the stream's final status (c.mu held); nil is OK.
func (cl *call) finish(st *status.Status) { cl.st, cl.ended = st, true }

// fail records a failure (c.mu held).
func (cl *call) fail(st *status.Status) { cl.st, cl.ended = st, true }

// result is the call's outcome after done: errRefused, a status error, or
// nil (OK with one message).
func (cl *call) result() error {
	if cl.err != nil {
		return cl.err
	}
	if !cl.ended {
		return status.Error(codes.Internal, "grpcdirect: stream ended without status")
	}
	if cl.st != nil && cl.st.Code() != codes.OK {
		return cl.st.Err()
	}
	if cl.msgs == 0 || cl.msgN != cl.msgLen {
		return status.Error(codes.Internal, "cardinality violation: received no response message from non-server-streaming RPC")
	}
	return nil
}

// finishReply delivers an OK call's message into reply and its metadata.
func (cl *call) finishReply(reply any) error {
	cl.deliverMD()
	buf := mem.NewBuffer(cl.msg, rawcodec.BufferPool)
	cl.msg = nil
	if m, ok := reply.(*rawcodec.Message); ok && !cl.compressed {
		m.SetSingle(buf) // as Unmarshal, without a slice
		return nil
	}
	data := mem.BufferSlice{buf}
	if cl.compressed {
		var err error
		if data, err = decompress(cl.encoding, data, cl.maxRecv); err != nil {
			return err
		}
	}
	err := rawcodec.Codec{}.Unmarshal(data, reply)
	data.Free()
	if err != nil {
		return status.Errorf(codes.Internal, "grpc: failed to unmarshal the received message: %v", err)
	}
	return nil
}

// decompress inflates a compressed response message (freeing d) with the
// grpc-go compressor registered for name, its size bounded by maxRecv: the
// same reading, limit and errors as grpc-go's client.
func decompress(name string, d mem.BufferSlice, maxRecv int) (mem.BufferSlice, error) {
	defer d.Free()
	comp := encoding.GetCompressor(name) // checked present when the message began
	r := d.Reader()
	dr, err := comp.Decompress(r)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "grpc: failed to decompress the message: %v", err)
	}
	if c, ok := dr.(io.Closer); ok {
		defer c.Close()
	}
	out, err := mem.ReadAll(io.LimitReader(dr, int64(maxRecv)+1), rawcodec.BufferPool)
	if err != nil {
		out.Free()
		return nil, status.Errorf(codes.Internal, "grpc: failed to read decompressed data: %v", err)
	}
	if out.Len() > maxRecv {
		out.Free()
		return nil, status.Errorf(codes.ResourceExhausted, "grpc: received message after decompression larger than max %d", maxRecv)
	}
	return out, nil
}

// keepMD copies a decoded block's metadata src into the call's own map
// *dst (made when missing) and returns it.
func (cl *call) keepMD(dst *metadata.MD, src metadata.MD) metadata.MD {
	if *dst == nil {
		*dst = make(metadata.MD, len(src))
	}
	cl.own.fill(dst, src)
	if *dst == nil { // fill dropped an oversized map
		*dst = make(metadata.MD)
		cl.own.fill(dst, src)
	}
	return *dst
}

// deliverMD sets the grpc.Header, grpc.Trailer and grpc.Peer options:
// with an MDStore, the targets are refilled in place; otherwise they get
// the call's own maps, which the call then no longer keeps.
func (cl *call) deliverMD() {
	if cl.hdrAddr != nil {
		if cl.store != nil {
			cl.store.fill(cl.hdrAddr, cl.header)
		} else {
			*cl.hdrAddr = cl.header
			if cl.header != nil {
				cl.hmd = nil
			}
		}
	}
	if cl.trlAddr != nil {
		if cl.store != nil {
			cl.store.fill(cl.trlAddr, cl.trailer)
		} else {
			*cl.trlAddr = cl.trailer
			if cl.trailer != nil {
				cl.tmd = nil
			}
		}
	}
	if cl.peerAddr != nil && cl.c != nil {
		*cl.peerAddr = cl.c.peer
	}
}

func isReserved(h string) bool {
	if h != "" && h[0] == ':' {
		return true
	}
	switch h {
	case "content-type", "user-agent", "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "te":
		return true
	}
	return false
}

var httpCodes = map[int]codes.Code{
	400: codes.Internal,
	401: codes.Unauthenticated,
	403: codes.PermissionDenied,
	404: codes.Unimplemented,
	429: codes.Unavailable,
	502: codes.Unavailable,
	503: codes.Unavailable,
	504: codes.Unavailable,
}

func httpStatusText(c int) string {
	switch c {
	case 400:
		return "Bad Request"
	case 401:
		return "Unauthorized"
	case 403:
		return "Forbidden"
	case 404:
		return "Not Found"
	case 429:
		return "Too Many Requests"
	case 500:
		return "Internal Server Error"
	case 502:
		return "Bad Gateway"
	case 503:
		return "Service Unavailable"
	case 504:
		return "Gateway Timeout"
	}
	return ""
}

// writeMetadata encodes the call's outgoing metadata (omd when not nil,
// else the context's): lowercase keys, reserved and pseudo headers
// skipped, -bin values base64 (unpadded, as grpc-go sends them).
func writeMetadata(e *hpack.Encoder, ctx context.Context, omd *metadata.MD) {
	var md metadata.MD
	if omd != nil {
		md = *omd
	} else {
		var ok bool
		if md, ok = metadata.FromOutgoingContext(ctx); !ok {
			return
		}
	}
	for k, vs := range md {
		for _, v := range vs {
			writeMD(e, k, v)
		}
	}
}

func writeMD(e *hpack.Encoder, k, v string) {
	k = grpcwire.LowerKey(k)
	if isReserved(k) {
		return
	}
	e.WriteField(hpack.HeaderField{Name: k, Value: grpcwire.EncodeValue(k, v)})
}
