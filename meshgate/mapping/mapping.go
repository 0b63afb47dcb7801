// Package mapping is the one place where a private frame meets gRPC. Both
// directions of the bridge use it: inbound (private listener → gRPC
// upstream) and outbound (gRPC listener → private upstream), so a request or
// a reply that crosses twice comes back as it left.
//
// Request (docs/protocol.md, "How a request is mapped"):
//
//	frame                     gRPC metadata
//	uin (≠ 0)                 x-mgp-uin, decimal
//	ext 1 traceparent         traceparent
//	ext 2 auth                verified and stripped; key id as x-mgp-key-id (private → gRPC only)
//	ext 3 deadline (ms)       the call's deadline (grpc-timeout)
//	ext 4 caller              x-mgp-caller
//	ext k ≥ 0x8000            x-mgp-ext-<k>-bin, one value per entry (repeated keys kept)
//
// Reply:
//
//	result                    status code (codec.GRPCCode); results ≥ 17 as UNKNOWN + trailer x-mgp-result
//	ext 5 message             status message
//	ext k ≥ 0x8000            x-mgp-ext-<k>-bin in the response headers or trailers
//
// A reply's application extensions become response header metadata; in the
// other direction both the headers and the trailers of a gRPC response are
// read, so extensions survive a double bridge whichever one the server
// used. Other metadata has no frame field and is not carried.
//
// The functions here keep the bridges' hot paths allocation-free where the
// old code was: extension values alias metadata strings (never written) and
// the request metadata reuses its storage across pooled requests.
package mapping

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unsafe"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// gRPC metadata keys.
const (
	MDUIN         = "x-mgp-uin"
	MDCaller      = "x-mgp-caller"
	MDKeyID       = "x-mgp-key-id"
	MDTraceparent = "traceparent"
	MDResult      = "x-mgp-result"
	MDExtPrefix   = "x-mgp-ext-"
	MDExtSuffix   = "-bin"
)

// ErrMetadata reports request metadata that cannot become a frame.
var ErrMetadata = errors.New("mapping: invalid request metadata")

// ExtMDKey is the binary metadata key carrying application extension key
// k (k ≥ codec.ExtAppMin): "x-mgp-ext-<k in decimal>-bin".
func ExtMDKey(k uint16) string {
	var b [len(MDExtPrefix) + 5 + len(MDExtSuffix)]byte
	out := strconv.AppendUint(append(b[:0], MDExtPrefix...), uint64(k), 10)
	return string(append(out, MDExtSuffix...))
}

// ParseExtMDKey reports whether md key k is an application-extension key
// (x-mgp-ext-…-bin) and, if so, its extension key. err is set when k has
// the prefix and suffix but not a decimal key in [0x8000, 0xffff].
func ParseExtMDKey(k string) (key uint16, isExt bool, err error) {
	if !strings.HasPrefix(k, MDExtPrefix) || !strings.HasSuffix(k, MDExtSuffix) || len(k) < len(MDExtPrefix)+len(MDExtSuffix) {
		return 0, false, nil
	}
	num := k[len(MDExtPrefix) : len(k)-len(MDExtSuffix)]
	n, perr := strconv.ParseUint(num, 10, 16)
	if perr != nil || uint16(n) < codec.ExtAppMin {
		return 0, true, fmt.Errorf("%w: metadata %q: key must be a decimal in [%d, 65535]", ErrMetadata, Clip(k), codec.ExtAppMin)
	}
	return uint16(n), true, nil
}

// bytesOf views s as bytes without copying. Extension values built from
// metadata are only read (encoded onto the wire) while the metadata is
// alive.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// Timeout returns the deadline a request frame carries in ext 3.
func Timeout(f *codec.Frame) (time.Duration, bool) {
	ms, ok := mgp.Deadline(f)
	return time.Duration(ms) * time.Millisecond, ok
}

// AppendDeadline appends ext 3 for remaining (rounded down to whole
// milliseconds, at least 1, at most 2³²-1) to f, encoded into buf, which
// must stay alive until f is encoded.
func AppendDeadline(f *codec.Frame, buf *[4]byte, remaining time.Duration) {
	ms := uint32(min(max(remaining.Milliseconds(), 1), 0xffffffff))
	f.Ext = append(f.Ext, codec.Ext{Key: codec.ExtDeadline, Value: mgp.PutDeadline(buf, ms)})
}
