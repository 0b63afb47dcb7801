package codec

import (
	"fmt"
	"unicode/utf8"
)

// ExtLen validates extensions for a TLV (u16 key, u16 length) area and
// returns their encoded length before padding. Key 0 is reserved for
// padding and a value is at most 65535 bytes; violations wrap
// ErrInvalidFrame. Codecs share it so they reject the same frames alike.
func ExtLen(ext []Ext) (int, error) {
	n := 0
	for i := range ext {
		e := &ext[i]
		if e.Key == 0 {
			return 0, fmt.Errorf("%w: extension key 0 is reserved for padding", ErrInvalidFrame)
		}
		if len(e.Value) > 0xffff {
			return 0, fmt.Errorf("%w: extension %d value is %d bytes, max 65535", ErrInvalidFrame, e.Key, len(e.Value))
		}
		n += 4 + len(e.Value)
	}
	return n, nil
}

// Grow extends dst by n bytes, reallocating only when its capacity is
// short, for Append implementations.
func Grow(dst []byte, n int) []byte {
	if cap(dst)-len(dst) >= n {
		return dst[:len(dst)+n]
	}
	nd := make([]byte, len(dst)+n, 2*cap(dst)+n)
	copy(nd, dst)
	return nd
}

// TruncateUTF8 returns the longest prefix of s, at most n bytes, that does
// not end inside a UTF-8 sequence. Bytes that are not valid UTF-8 are cut
// as single bytes.
func TruncateUTF8(s []byte, n int) []byte {
	if n >= len(s) {
		return s
	}
	if n <= 0 {
		return s[:0]
	}
	// Step back over continuation bytes to the start of the rune at n,
	// then keep that rune only if it ends by n.
	i := n
	for i > 0 && n-i < utf8.UTFMax && !utf8.RuneStart(s[i]) {
		i--
	}
	if _, size := utf8.DecodeRune(s[i:]); i+size <= n {
		return s[:i+size]
	}
	return s[:i]
}
