// Package fixed builds a codec.Codec from a YAML description of a
// fixed-header, length-prefixed binary protocol, so that a team can bridge
// its in-house protocol without writing Go.
//
// A description lists the header fields in wire order; each field has a
// size and either a constant, a role that maps it onto codec.Frame, or
// neither (a reserved field: written as zero, ignored on decode). Optional
// parts are a TLV extension area between the fixed fields and header_len,
// constant trailer bytes after the body, and a mapping of flag bits.
//
// # Schema
//
//	name: <string>            # optional; the registry name (Register can override)
//	byte_order: big | little  # every multi-byte integer, extension TLVs included
//	fields:                   # in wire order from offset 0
//	  - name: <string>        # unique; named in decode errors (codec.FieldError.Field)
//	    size: 1 | 2 | 4 | 8   # bytes
//	    const: <uint>         # optional: checked on decode, written on encode
//	    role: <role>          # optional, exclusive with const, each role at most once
//	    # header_len only:
//	    min: <int>            # default: size of the fixed fields
//	    max: <int>            # default: min(largest value of the field, 65535)
//	    multiple_of: <int>    # default 1
//	    # total_len only:
//	    includes: [header, body, trailer]   # what the value counts; default all; body required
//	extensions:               # optional; needs a header_len field
//	  format: tlv16           # key u16, len u16, value; key 0 starts zero padding
//	  align: 1 | 2 | 4 | 8    # encode pads header_len to a multiple of it
//	trailer:                  # optional
//	  name: <string>          # default "trailer"
//	  bytes: [<byte>, ...]    # checked on decode, written on encode
//	flag_bits:                # optional, needs a flags field; default {response: 0, oneway: 1, heartbeat: 2, push: 3}; streams add more, cancel
//	  response: <bit>         # wire bit number carrying codec.FlagResponse
//	  oneway: <bit>
//	  heartbeat: <bit>
//	  push: <bit>
//	  more: <bit>             # codec.FlagMore (streams)
//	  cancel: <bit>           # codec.FlagCancel (streams)
//
// Roles: header_len (bytes from the first header byte to the first body
// byte; without it the header is exactly the fixed fields), body_len or
// total_len (exactly one of them), cmd and seq (at most 4 bytes), uin (at
// most 8), flags and result (at most 2). Frame fields without a role decode
// as zero and are not sent; flags without a wire bit are not sent, wire bits
// without a flag are ignored. A description without an extensions area does
// not carry Frame.Ext (Append drops it rather than failing, so bridges can
// attach metadata uniformly).
//
// A malformed description is rejected with every problem, joined with
// errors.Join and wrapping ErrSpec, each naming its path, e.g.
//
//	fields[2].size: must be 1, 2, 4 or 8
//	fields[3].role: role seq already given to fields[1]
//
// Unknown keys are errors too (yaml KnownFields).
//
// # Example: MGP/1 (testdata/mgp.yaml)
//
// Encodes byte-for-byte like the built-in codec/mgp and decodes identically
// (tested over a shared corpus and by FuzzDifferential):
//
//	name: mgp-declarative
//	byte_order: big
//	fields:
//	  - {name: stx, size: 1, const: 0x02}
//	  - {name: version, size: 1, const: 1}
//	  - {name: header_len, size: 2, role: header_len, min: 32, max: 4096, multiple_of: 4}
//	  - {name: body_len, size: 4, role: body_len}
//	  - {name: cmd, size: 4, role: cmd}
//	  - {name: seq, size: 4, role: seq}
//	  - {name: uin, size: 8, role: uin}
//	  - {name: flags, size: 2, role: flags}
//	  - {name: result, size: 2, role: result}
//	  - {name: reserved, size: 4}
//	extensions: {format: tlv16, align: 4}
//	trailer: {name: etx, bytes: [0x03]}
//	flag_bits: {response: 0, oneway: 1, heartbeat: 2, push: 3, more: 4, cancel: 5}
//
// # Example: a length-first little-endian protocol (testdata/le16.yaml)
//
// A 16-byte header whose first field counts the whole frame, no extensions,
// no trailer, two flags in the top bits of a one-byte field:
//
//	name: le16
//	byte_order: little
//	fields:
//	  - {name: length, size: 4, role: total_len, includes: [header, body]}
//	  - {name: cmd, size: 2, role: cmd}
//	  - {name: flags, size: 1, role: flags}
//	  - {name: magic, size: 1, const: 0xa5}
//	  - {name: seq, size: 4, role: seq}
//	  - {name: uin, size: 4, role: uin}
//	flag_bits: {response: 7, oneway: 6}
//
// # Using it
//
//	c, err := fixed.Load("le16.yaml", maxFrameSize)       // or fixed.Parse(doc, max)
//	c, err := fixed.FromNode(&cfg.Codecs[i].Spec, max)    // inline spec in the config
//	err = fixed.Register("le16", c)                       // codec.New("le16", max) now works
//
// The codec keeps the codec.Codec contract: incremental Decode reporting
// need, the frame size checked against the limit from the length fields
// alone (before the body is read or allocated), typed errors naming the
// field (codec.FieldError, codec.TooLargeError), a verdict independent of
// how the stream is split, and zero allocations on Decode into a reused
// Frame and on Append into a buffer with capacity.
package fixed
