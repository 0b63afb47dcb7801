package mapping

import (
	"strconv"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/codec"
)

// ReplyFrame fills the result, extensions and body of reply frame out
// (whose cmd, seq, uin and flags the caller set) from the outcome of a gRPC
// call: body on success, err (a status error) otherwise, and the response
// header and trailer metadata. Application extensions are taken from both
// header and trailer. A failed call always carries ext 5, even with an
// empty message, so that the message round-trips exactly. Extension values
// alias the metadata and status strings: they must outlive the encoding of
// out.
func ReplyFrame(out *codec.Frame, body []byte, err error, header, trailer metadata.MD) {
	out.Ext = out.Ext[:0]
	_ = appendExts(header, out, false)
	_ = appendExts(trailer, out, false)
	if err == nil {
		out.Result, out.Body = codec.ResultOK, body
		return
	}
	st, _ := status.FromError(err)
	code := uint32(st.Code())
	out.Result = codec.ResultFor(code, AppResult(code, trailer))
	out.Body = nil
	out.Ext = append(out.Ext, codec.Ext{Key: codec.ExtErrorMsg, Value: bytesOf(CallerMessage(st.Code(), st.Message()))})
}

// AppResult returns the x-mgp-result trailer value of an UNKNOWN status,
// or 0 when the code is not UNKNOWN or the trailer is absent or malformed.
func AppResult(code uint32, trailer metadata.MD) uint16 {
	if codes.Code(code) != codes.Unknown {
		return 0
	}
	v := trailer[MDResult]
	if len(v) == 0 {
		return 0
	}
	n, err := strconv.ParseUint(v[0], 10, 16)
	if err != nil {
		return 0
	}
	return uint16(n)
}

// ReplyHeader returns the response header metadata for reply frame resp:
// one x-mgp-ext-<k>-bin value per application extension, in frame order;
// nil when there is none.
func ReplyHeader(resp *codec.Frame) metadata.MD {
	var md metadata.MD
	for i := range resp.Ext {
		e := &resp.Ext[i]
		if e.Key < codec.ExtAppMin {
			continue
		}
		if md == nil {
			md = metadata.MD{}
		}
		k := ExtMDKey(e.Key)
		md[k] = append(md[k], string(e.Value))
	}
	return md
}

// ReplyStatus returns the gRPC status of reply frame resp (nil for result
// 0) and, for results 17–65535, the trailer carrying x-mgp-result. The
// message is ext 5 when present (even empty), otherwise "upstream result
// <n>" so that a bare result still explains itself.
func ReplyStatus(resp *codec.Frame) (trailer metadata.MD, err error) {
	if resp.Result == codec.ResultOK {
		return nil, nil
	}
	code, app := codec.GRPCCode(resp.Result)
	var msg string
	if v, ok := resp.ExtValue(codec.ExtErrorMsg); ok {
		msg = strings.ToValidUTF8(string(v), "?")
	} else {
		msg = "upstream result " + strconv.Itoa(int(resp.Result))
	}
	if app {
		trailer = metadata.MD{MDResult: []string{strconv.Itoa(int(resp.Result))}}
	}
	return trailer, status.Error(codes.Code(code), msg)
}

// StatusResult is the result code for a gRPC status error (0 for nil),
// with the x-mgp-result trailer when known.
func StatusResult(err error, trailer metadata.MD) uint16 {
	if err == nil {
		return codec.ResultOK
	}
	code := uint32(status.Code(err))
	return codec.ResultFor(code, AppResult(code, trailer))
}

// maxFallbackMsg bounds the message of a fallback reply (Unencodable).
const maxFallbackMsg = 512

// Unencodable returns the reply to send when reply f could not be encoded
// (err wraps codec.ErrInvalidFrame): a successful reply whose body does not
// fit the frame limit becomes result 6 (RESOURCE_EXHAUSTED, as gRPC answers
// a message over its limit) with a message saying why; a failed reply keeps
// its result with its message cut to 512 bytes on a UTF-8 boundary. The
// body and other extensions are dropped.
func Unencodable(f *codec.Frame, err error) *codec.Frame {
	out := &codec.Frame{Cmd: f.Cmd, Seq: f.Seq, UIN: f.UIN, Flags: f.Flags, Result: f.Result}
	var msg []byte
	if f.Result == codec.ResultOK {
		out.Result = codec.ResultOverloaded
		msg = []byte("meshgate: reply of " + strconv.Itoa(len(f.Body)) + " bytes does not fit the downstream frame limit: " + err.Error())
	} else if v, ok := f.ExtValue(codec.ExtErrorMsg); ok {
		msg = v
	}
	if msg != nil {
		out.Ext = []codec.Ext{{Key: codec.ExtErrorMsg, Value: codec.TruncateUTF8(msg, maxFallbackMsg)}}
	}
	return out
}
