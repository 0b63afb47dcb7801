package grpcserve

import (
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/meshgate/meshgate/meshgate/grpcwire"
)

// Frames are written by hand into the connection's write buffer (a frame
// is a 9-byte header and its payload): http2.Framer's writer keeps a
// buffer as large as the largest frame it wrote for the connection's
// life, which an idle connection should not hold.

const (
	frameHeaderLen = 9
	defaultWindow  = 65535
	defaultMaxFrm  = 16384
	maxWindow      = 1<<31 - 1
)

// appendFrameHeader appends a frame header.
func appendFrameHeader(b []byte, length int, t http2.FrameType, flags http2.Flags, id uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), byte(t), byte(flags),
		byte(id>>24)&0x7f, byte(id>>16), byte(id>>8), byte(id))
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendRST(b []byte, id uint32, code http2.ErrCode) []byte {
	b = appendFrameHeader(b, 4, http2.FrameRSTStream, 0, id)
	return appendUint32(b, uint32(code))
}

func appendWindowUpdate(b []byte, id, incr uint32) []byte {
	b = appendFrameHeader(b, 4, http2.FrameWindowUpdate, 0, id)
	return appendUint32(b, incr&0x7fffffff)
}

func appendGoAway(b []byte, lastID uint32, code http2.ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), http2.FrameGoAway, 0, 0)
	b = appendUint32(b, lastID&0x7fffffff)
	b = appendUint32(b, uint32(code))
	return append(b, debug...)
}

func appendPingAck(b []byte, data [8]byte) []byte {
	return appendPing(b, http2.FlagPingAck, data)
}

func appendPing(b []byte, flags http2.Flags, data [8]byte) []byte {
	b = appendFrameHeader(b, 8, http2.FramePing, flags, 0)
	return append(b, data[:]...)
}

func appendSettings(b []byte, s ...http2.Setting) []byte {
	b = appendFrameHeader(b, 6*len(s), http2.FrameSettings, 0, 0)
	for _, st := range s {
		b = append(b, byte(st.ID>>8), byte(st.ID))
		b = appendUint32(b, st.Val)
	}
	return b
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, http2.FrameSettings, http2.FlagSettingsAck, 0)
}

// appendHeaderBlock appends block as HEADERS (+ CONTINUATION frames past
// maxFrame) on stream id.
func appendHeaderBlock(b []byte, id uint32, block []byte, endStream bool, maxFrame int) []byte {
	first := true
	for {
		n := min(len(block), maxFrame)
		var flags http2.Flags
		t := http2.FrameContinuation
		if first {
			t = http2.FrameHeaders
			if endStream {
				flags |= http2.FlagHeadersEndStream
			}
		}
		if n == len(block) {
			flags |= http2.FlagHeadersEndHeaders
		}
		b = appendFrameHeader(b, n, t, flags, id)
		b = append(b, block[:n]...)
		block = block[n:]
		first = false
		if len(block) == 0 {
			return b
		}
	}
}

// headerBuf collects the HPACK encoder's output.
type headerBuf struct{ b []byte }

func (h *headerBuf) Write(p []byte) (int, error) { h.b = append(h.b, p...); return len(p), nil }

// isReserved reports header names that are not metadata (grpc-go's
// reserved set; content-type and user-agent are metadata on a server, as
// grpc-go delivers them).
func isReserved(h string) bool {
	switch h {
	case "grpc-message-type", "grpc-encoding", "grpc-message", "grpc-status", "grpc-timeout", "grpc-status-details-bin", "te", "grpc-accept-encoding":
		return true
	}
	return h != "" && h[0] == ':'
}

// writeMD encodes one metadata pair of a reply: reserved names skipped,
// -bin values base64 without padding (as grpc-go sends them).
func writeMD(e *hpack.Encoder, k, v string) {
	k = grpcwire.LowerKey(k)
	if isReserved(k) || k == "content-type" {
		return
	}
	_ = e.WriteField(hpack.HeaderField{Name: k, Value: grpcwire.EncodeValue(k, v)})
}

// replyContentType is the content-type of a reply to a request of
// content-type ct (valid), as grpc-go's server answers it: what follows
// "application/grpc" and its '+' or ';' is the content-subtype, echoed
// after a '+'.
func replyContentType(ct string) string {
	const base = "application/grpc"
	switch {
	case len(ct) <= len(base)+1:
		return base
	case ct[len(base)] == '+':
		return ct
	}
	return base + "+" + ct[len(base)+1:]
}
