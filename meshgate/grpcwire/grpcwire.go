// Package grpcwire holds the header encodings of gRPC over HTTP/2 that
// both of MeshGate's own transports speak (the client, meshgate/grpcdirect,
// and the server, meshgate/grpcserve): the content-type check, binary metadata values,
// grpc-message percent-encoding and grpc-timeout, as grpc-go encodes and
// decodes them (its own helpers are internal to grpc-go).
package grpcwire

import (
	"encoding/base64"
	"fmt"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// ValidContentType reports whether ct is a gRPC content-type:
// application/grpc, optionally followed by +subtype or ;params.
func ValidContentType(ct string) bool {
	const base = "application/grpc"
	if !strings.HasPrefix(ct, base) {
		return false
	}
	return len(ct) == len(base) || ct[len(base)] == '+' || ct[len(base)] == ';'
}

// LowerKey returns k in lower case (metadata keys are lower case on the
// wire), without allocating when it already is.
func LowerKey(k string) string {
	for i := 0; i < len(k); i++ {
		if c := k[i]; 'A' <= c && c <= 'Z' {
			return strings.ToLower(k)
		}
	}
	return k
}

// EncodeValue returns the wire form of metadata value v of key k: a
// "-bin" key's value base64 without padding, as grpc-go sends it; any
// other value unchanged.
func EncodeValue(k, v string) string {
	if strings.HasSuffix(k, "-bin") {
		return base64.RawStdEncoding.EncodeToString([]byte(v))
	}
	return v
}

// DecodeValue is EncodeValue's inverse; a "-bin" value is accepted padded
// or not.
func DecodeValue(k, v string) (string, error) {
	if !strings.HasSuffix(k, "-bin") {
		return v, nil
	}
	var b []byte
	var err error
	if len(v)%4 == 0 {
		b, err = base64.StdEncoding.DecodeString(v)
	} else {
		b, err = base64.RawStdEncoding.DecodeString(v)
	}
	return string(b), err
}

// EncodeMessage percent-encodes a grpc-message value as grpc-go does:
// bytes outside printable ASCII, and '%', become %XX; a byte that is not
// valid UTF-8 is sent as U+FFFD's bytes (%EF%BF%BD).
func EncodeMessage(msg string) string {
	need := false
	for i := 0; i < len(msg); i++ {
		if c := msg[i]; c < 0x20 || c > 0x7e || c == '%' {
			need = true
			break
		}
	}
	if !need {
		return msg
	}
	const hex = "0123456789ABCDEF"
	var sb strings.Builder
	sb.Grow(len(msg) + 8)
	pct := func(c byte) {
		sb.WriteByte('%')
		sb.WriteByte(hex[c>>4])
		sb.WriteByte(hex[c&15])
	}
	for len(msg) > 0 {
		r, size := utf8.DecodeRuneInString(msg)
		switch {
		case r == utf8.RuneError && size == 1:
			pct(0xEF)
			pct(0xBF)
			pct(0xBD)
		case size > 1:
			for i := range size {
				pct(msg[i])
			}
		case msg[0] < 0x20 || msg[0] > 0x7e || msg[0] == '%':
			pct(msg[0])
		default:
			sb.WriteByte(msg[0])
		}
		msg = msg[size:]
	}
	return sb.String()
}

// DecodeMessage percent-decodes a grpc-message value as grpc-go does (a
// '%' not followed by two hex digits stays as it is).
func DecodeMessage(msg string) string {
	if !strings.Contains(msg, "%") {
		return msg
	}
	var sb strings.Builder
	for i := 0; i < len(msg); i++ {
		c := msg[i]
		if c == '%' && i+2 < len(msg) {
			if v, err := strconv.ParseUint(msg[i+1:i+3], 16, 8); err == nil {
				sb.WriteByte(byte(v))
				i += 2
				continue
			}
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// ParseTimeout parses a grpc-timeout value (1–8 digits and one of H M S m
// u n); a value past time.Duration's range is its maximum. Its errors
// read as grpc-go's.
func ParseTimeout(s string) (time.Duration, error) {
	if len(s) < 2 {
		return 0, fmt.Errorf("transport: timeout string is too short: %q", s)
	}
	if len(s) > 9 {
		return 0, fmt.Errorf("transport: timeout string is too long: %q", s)
	}
	var unit time.Duration
	switch s[len(s)-1] {
	case 'H':
		unit = time.Hour
	case 'M':
		unit = time.Minute
	case 'S':
		unit = time.Second
	case 'm':
		unit = time.Millisecond
	case 'u':
		unit = time.Microsecond
	case 'n':
		unit = time.Nanosecond
	default:
		return 0, fmt.Errorf("transport: timeout unit is not recognized: %q", s)
	}
	v, err := strconv.ParseUint(s[:len(s)-1], 10, 64)
	if err != nil {
		return 0, err
	}
	const maxD = time.Duration(1<<63 - 1)
	if unit > 1 && v > uint64(maxD/unit) {
		return maxD, nil
	}
	return time.Duration(v) * unit, nil
}

// AppendTimeout appends d in grpc-timeout form (at most 8 digits, rounded
// up to the unit), as grpc-go encodes it; d ≤ 0 is "0n".
func AppendTimeout(b []byte, d time.Duration) []byte {
	if d <= 0 {
		return append(b, '0', 'n')
	}
	const maxV = 1e8 - 1
	units := [...]struct {
		d time.Duration
		u byte
	}{{time.Nanosecond, 'n'}, {time.Microsecond, 'u'}, {time.Millisecond, 'm'}, {time.Second, 'S'}, {time.Minute, 'M'}}
	for _, u := range units {
		v := int64(d / u.d)
		if d%u.d > 0 {
			v++
		}
		if v <= maxV {
			return append(strconv.AppendInt(b, v, 10), u.u)
		}
	}
	v := int64(d / time.Hour)
	if d%time.Hour > 0 {
		v++
	}
	return append(strconv.AppendInt(b, v, 10), 'H')
}
