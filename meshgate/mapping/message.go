package mapping

import (
	"regexp"
	"strings"

	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/codec"
)

// MaxMessageLen caps, in bytes, any piece of a caller's own input (a
// method name, a metadata key) that MeshGate quotes back in an error
// message: input is never echoed unbounded.
const MaxMessageLen = 256

// Clip bounds s to MaxMessageLen bytes of valid UTF-8, cut on a rune
// boundary, for quoting caller input. It returns s itself (no copy) when s
// is short and valid.
func Clip(s string) string {
	if len(s) > MaxMessageLen {
		s = string(codec.TruncateUTF8([]byte(s), MaxMessageLen-3)) + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

// transportText marks status messages grpc-go makes up on the client side
// for transport failures; they name upstream addresses and socket errors.
var transportText = []string{"connection error", "transport", "dial ", "error reading from server",
	"RST_STREAM", "context deadline", "context canceled", "resolver", "grpc: ", "connect:", "no address"}

// addrRE matches ip:port (v4 or bracketed v6).
var addrRE = regexp.MustCompile(`\b\d{1,3}(\.\d{1,3}){3}:\d+\b|\[[0-9a-fA-F:.]+\](:\d+)?`)

// CallerMessage is what a caller is told about a failed upstream call. A
// message grpc-go made up for a transport failure (UNAVAILABLE,
// DEADLINE_EXCEEDED, CANCELED, INTERNAL) becomes a fixed text; an
// upstream application's message passes as valid UTF-8 with any ip:port in
// it masked; its length is bounded by the frame encoder (ext 5 is cut on a
// UTF-8 boundary to fit the header). The full error belongs in the Debug
// log.
func CallerMessage(code codes.Code, msg string) string {
	switch code {
	case codes.Unavailable, codes.DeadlineExceeded, codes.Canceled, codes.Internal:
		for _, t := range transportText {
			if strings.Contains(msg, t) {
				switch code {
				case codes.Unavailable:
					return "upstream unavailable"
				case codes.DeadlineExceeded:
					return "upstream did not answer in time"
				case codes.Canceled:
					return "call canceled"
				}
				return "upstream call failed"
			}
		}
	}
	msg = strings.ToValidUTF8(msg, "?")
	if strings.IndexByte(msg, ':') >= 0 {
		msg = addrRE.ReplaceAllString(msg, "<addr>")
	}
	return msg
}
