package codec

import "encoding/binary"

// ParseExt appends the TLV entries (u16 key, u16 length, value) of an
// extensions area to f.Ext; the values alias area. A key-0 entry, or fewer
// than 4 bytes left, starts the padding, which must be all zero. le selects
// little-endian keys and lengths (MGP/1 is big-endian). Errors are
// *FieldError (wrapping ErrMalformed). Allocation-free once f.Ext has room.
func ParseExt(area []byte, le bool, f *Frame) error {
	for off := 0; off < len(area); {
		if len(area)-off < 4 || u16(area[off:], le) == 0 {
			for _, b := range area[off:] {
				if b != 0 {
					return &FieldError{Field: "extensions", Value: uint64(off), Reason: "non-zero padding"}
				}
			}
			return nil
		}
		key := u16(area[off:], le)
		l := int(u16(area[off+2:], le))
		off += 4
		if l > len(area)-off {
			return &FieldError{Field: "extensions", Value: uint64(l), Reason: "TLV value runs past header_len"}
		}
		f.Ext = append(f.Ext, Ext{Key: key, Value: area[off : off+l : off+l]})
		off += l
	}
	return nil
}

func u16(b []byte, le bool) uint16 {
	if le {
		return binary.LittleEndian.Uint16(b)
	}
	return binary.BigEndian.Uint16(b)
}
