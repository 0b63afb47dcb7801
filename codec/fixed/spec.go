package fixed

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"sort"

	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/codec"
)

// Spec is a protocol description, the YAML document Parse reads. See the
// package documentation for the meaning of every key.
type Spec struct {
	// Name is the codec's registry name (optional; Register names it too).
	Name string `yaml:"name,omitempty"`
	// ByteOrder of every multi-byte integer: "big" or "little".
	ByteOrder string `yaml:"byte_order"`
	// Fields of the fixed header, in wire order from offset 0.
	Fields []FieldSpec `yaml:"fields"`
	// Extensions, when present, lie between the fixed fields and
	// header_len (requires a header_len field).
	Extensions *ExtSpec `yaml:"extensions,omitempty"`
	// Trailer is constant bytes after the body (optional).
	Trailer *TrailerSpec `yaml:"trailer,omitempty"`
	// FlagBits maps codec flag names (response, oneway, heartbeat, push, more, cancel)
	// to wire bit numbers of the flags field. Default: identity (bits 0-3).
	FlagBits map[string]int `yaml:"flag_bits,omitempty"`
}

// FieldSpec is one fixed-header field.
type FieldSpec struct {
	Name string `yaml:"name"`
	// Size in bytes: 1, 2, 4 or 8.
	Size int `yaml:"size"`
	// Const is checked on decode and written on encode.
	Const *uint64 `yaml:"const,omitempty"`
	// Role maps the field onto the frame (see the package doc). A field
	// with neither role nor const is reserved: zero on encode, ignored on
	// decode.
	Role string `yaml:"role,omitempty"`
	// Min, Max and MultipleOf constrain a header_len field.
	Min        int `yaml:"min,omitempty"`
	Max        int `yaml:"max,omitempty"`
	MultipleOf int `yaml:"multiple_of,omitempty"`
	// Includes lists what a total_len field counts, among header, body
	// and trailer (default all three; body is required).
	Includes []string `yaml:"includes,omitempty"`
}

// ExtSpec describes the extension area.
type ExtSpec struct {
	// Format of the entries: "tlv16" (key u16, len u16, value; key 0
	// starts zero padding), the only one so far and the default.
	Format string `yaml:"format,omitempty"`
	// Align pads the header so that header_len is a multiple of it (1, 2,
	// 4 or 8; default 1).
	Align int `yaml:"align,omitempty"`
}

// TrailerSpec is constant bytes following the body.
type TrailerSpec struct {
	Name  string `yaml:"name,omitempty"` // for errors; default "trailer"
	Bytes []int  `yaml:"bytes"`
}

// Field roles.
const (
	RoleHeaderLen = "header_len"
	RoleBodyLen   = "body_len"
	RoleTotalLen  = "total_len"
	RoleCmd       = "cmd"
	RoleSeq       = "seq"
	RoleUIN       = "uin"
	RoleFlags     = "flags"
	RoleResult    = "result"
)

// ErrSpec wraps every description problem.
var ErrSpec = errors.New("fixed: invalid codec description")

// roleMaxSize is the widest field each role may use (the Frame field's size).
var roleMaxSize = map[string]int{
	RoleHeaderLen: 8, RoleBodyLen: 8, RoleTotalLen: 8,
	RoleCmd: 4, RoleSeq: 4, RoleUIN: 8, RoleFlags: 2, RoleResult: 2,
}

var flagNames = map[string]codec.Flags{
	"response": codec.FlagResponse, "oneway": codec.FlagOneway,
	"heartbeat": codec.FlagHeartbeat, "push": codec.FlagPush,
	"more": codec.FlagMore, "cancel": codec.FlagCancel,
}

// Parse reads a YAML description (unknown keys are errors) and builds the
// codec with the given frame limit (0 = codec.DefaultMaxFrameSize).
func Parse(doc []byte, maxFrameSize int) (*Codec, error) {
	dec := yaml.NewDecoder(bytes.NewReader(doc))
	dec.KnownFields(true)
	var s Spec
	if err := dec.Decode(&s); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("%w: empty description", ErrSpec)
		}
		return nil, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	return New(s, maxFrameSize)
}

// Load reads and parses the description in file path.
func Load(path string, maxFrameSize int) (*Codec, error) {
	doc, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	c, err := Parse(doc, maxFrameSize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// FromNode builds the codec from an inline description already parsed as
// part of another YAML document (config.CodecSpec.Spec). Unknown keys are
// errors, as with Parse.
func FromNode(n *yaml.Node, maxFrameSize int) (*Codec, error) {
	if n == nil || n.Kind == 0 {
		return nil, fmt.Errorf("%w: empty description", ErrSpec)
	}
	doc, err := yaml.Marshal(n)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrSpec, err)
	}
	return Parse(doc, maxFrameSize)
}

// problems collects description errors, each naming its field path.
type problems []error

func (p *problems) add(path, format string, args ...any) {
	*p = append(*p, fmt.Errorf("%s: %s", path, fmt.Sprintf(format, args...)))
}

func (p problems) err() error {
	if len(p) == 0 {
		return nil
	}
	return fmt.Errorf("%w:\n%w", ErrSpec, errors.Join(p...))
}

func maxValue(size int) uint64 {
	if size >= 8 {
		return ^uint64(0)
	}
	return 1<<(8*size) - 1
}

// New validates s and builds the codec (0 = codec.DefaultMaxFrameSize).
// Every problem is reported, joined, each naming its field path.
func New(s Spec, maxFrameSize int) (*Codec, error) {
	if maxFrameSize <= 0 {
		maxFrameSize = codec.DefaultMaxFrameSize
	}
	var p problems
	c := &Codec{name: s.Name, max: maxFrameSize, hl: -1, bl: -1, tl: -1, inclBody: true}
	switch s.ByteOrder {
	case "big":
	case "little":
		c.le = true
	default:
		p.add("byte_order", "must be big or little, not %q", s.ByteOrder)
	}
	if len(s.Fields) == 0 {
		p.add("fields", "at least one field is required")
	}
	names := map[string]int{}
	roles := map[string]int{}
	off := 0
	for i, fs := range s.Fields {
		path := fmt.Sprintf("fields[%d]", i)
		fd := field{name: fs.Name, off: off, size: fs.Size}
		if fs.Name == "" {
			p.add(path+".name", "required")
		} else if j, dup := names[fs.Name]; dup {
			p.add(path+".name", "%q already names fields[%d]", fs.Name, j)
		} else {
			names[fs.Name] = i
		}
		switch fs.Size {
		case 1, 2, 4, 8:
		default:
			p.add(path+".size", "must be 1, 2, 4 or 8")
			fd.size = 1 // keep offsets meaningful for later checks
		}
		off += fd.size
		if fs.Const != nil {
			if fs.Role != "" {
				p.add(path+".const", "a field has either a const or a role")
			}
			if *fs.Const > maxValue(fd.size) {
				p.add(path+".const", "%#x does not fit %d bytes", *fs.Const, fd.size)
			}
			fd.hasConst, fd.konst = true, *fs.Const
		}
		if fs.Role != "" {
			maxSize, known := roleMaxSize[fs.Role]
			switch {
			case !known:
				p.add(path+".role", "unknown role %q (want one of %s)", fs.Role, roleList())
			case fs.Size > maxSize:
				p.add(path+".size", "role %s holds at most %d bytes", fs.Role, maxSize)
			}
			if j, dup := roles[fs.Role]; dup {
				p.add(path+".role", "role %s already given to fields[%d]", fs.Role, j)
			}
			roles[fs.Role] = i
			fd.role = fs.Role
		}
		if fs.Role != RoleHeaderLen && (fs.Min != 0 || fs.Max != 0 || fs.MultipleOf != 0) {
			p.add(path, "min, max and multiple_of apply to the header_len role only")
		}
		if fs.Role != RoleTotalLen && len(fs.Includes) > 0 {
			p.add(path+".includes", "applies to the total_len role only")
		}
		c.fields = append(c.fields, fd)
	}
	c.fixed = off
	if len(s.Fields) > 0 && p.err() == nil {
		c.compileRoles(s, roles, &p)
	}
	c.compileExt(s, roles, &p)
	c.compileTrailer(s, &p)
	c.compileFlags(s, roles, &p)
	if err := p.err(); err != nil {
		return nil, err
	}
	c.finish()
	if c.minFrame > c.max {
		p.add("fields", "smallest frame (%d bytes) exceeds the maximum frame size %d", c.minFrame, c.max)
		return nil, p.err()
	}
	return c, nil
}

func roleList() string {
	var r []string
	for k := range roleMaxSize {
		r = append(r, k)
	}
	sort.Strings(r)
	return fmt.Sprint(r)
}

func (c *Codec) compileRoles(s Spec, roles map[string]int, p *problems) {
	_, hasBL := roles[RoleBodyLen]
	_, hasTL := roles[RoleTotalLen]
	switch {
	case hasBL && hasTL:
		p.add(fmt.Sprintf("fields[%d].role", roles[RoleTotalLen]), "body_len and total_len exclude each other")
	case !hasBL && !hasTL:
		p.add("fields", "one field needs role body_len or total_len")
	}
	for i := range c.fields {
		fd := &c.fields[i]
		path := fmt.Sprintf("fields[%d]", i)
		switch fd.role {
		case RoleHeaderLen:
			c.hl = i
			fs := s.Fields[i]
			c.hlMin, c.hlMax, c.hlMult = fs.Min, fs.Max, fs.MultipleOf
			if c.hlMin == 0 {
				c.hlMin = c.fixed
			} else if c.hlMin < c.fixed {
				p.add(path+".min", "%d is less than the fixed header size %d", c.hlMin, c.fixed)
			}
			if c.hlMax == 0 {
				c.hlMax = int(min(maxValue(fd.size), 65535))
			} else if uint64(c.hlMax) > maxValue(fd.size) {
				p.add(path+".max", "%d does not fit %d bytes", c.hlMax, fd.size)
			}
			if c.hlMax < c.hlMin {
				p.add(path+".max", "%d is less than min %d", c.hlMax, c.hlMin)
			}
			if c.hlMult == 0 {
				c.hlMult = 1
			} else if c.hlMult < 0 || c.hlMult > 4096 {
				p.add(path+".multiple_of", "must be in [1, 4096]")
			}
		case RoleBodyLen:
			c.bl = i
		case RoleTotalLen:
			c.tl = i
			inc := s.Fields[i].Includes
			if len(inc) == 0 {
				inc = []string{"header", "body", "trailer"}
			}
			c.inclBody = false
			seen := map[string]bool{}
			for j, what := range inc {
				if seen[what] {
					p.add(fmt.Sprintf("%s.includes[%d]", path, j), "%q listed twice", what)
				}
				seen[what] = true
				switch what {
				case "header":
					c.inclHeader = true
				case "body":
					c.inclBody = true
				case "trailer":
					c.inclTrailer = true
				default:
					p.add(fmt.Sprintf("%s.includes[%d]", path, j), "must be header, body or trailer, not %q", what)
				}
			}
			if !c.inclBody {
				p.add(path+".includes", "must include body")
			}
		}
	}
}

func (c *Codec) compileExt(s Spec, roles map[string]int, p *problems) {
	if s.Extensions == nil {
		return
	}
	if _, ok := roles[RoleHeaderLen]; !ok {
		p.add("extensions", "need a field with role header_len to delimit them")
	}
	if f := s.Extensions.Format; f != "" && f != "tlv16" {
		p.add("extensions.format", "must be tlv16, not %q", f)
	}
	c.ext = true
	c.align = s.Extensions.Align
	switch c.align {
	case 0:
		c.align = 1
	case 1, 2, 4, 8:
	default:
		p.add("extensions.align", "must be 1, 2, 4 or 8")
	}
}

func (c *Codec) compileTrailer(s Spec, p *problems) {
	if s.Trailer == nil {
		return
	}
	c.trailerName = s.Trailer.Name
	if c.trailerName == "" {
		c.trailerName = "trailer"
	}
	if len(s.Trailer.Bytes) == 0 {
		p.add("trailer.bytes", "at least one byte is required")
	}
	for i, b := range s.Trailer.Bytes {
		if b < 0 || b > 255 {
			p.add(fmt.Sprintf("trailer.bytes[%d]", i), "%d is not a byte", b)
		}
		c.trailer = append(c.trailer, byte(b))
	}
}

func (c *Codec) compileFlags(s Spec, roles map[string]int, p *problems) {
	i, ok := roles[RoleFlags]
	if !ok {
		if len(s.FlagBits) > 0 {
			p.add("flag_bits", "need a field with role flags")
		}
		return
	}
	bits := 8 * c.fields[i].size
	if len(s.FlagBits) == 0 {
		for b := range 4 {
			c.flagWire[b] = 1 << b
		}
		return
	}
	names := make([]string, 0, len(s.FlagBits))
	for n := range s.FlagBits {
		names = append(names, n)
	}
	sort.Strings(names)
	used := map[int]string{}
	for _, n := range names {
		bit := s.FlagBits[n]
		path := "flag_bits." + n
		fl, known := flagNames[n]
		if !known {
			p.add(path, "unknown flag (want response, oneway, heartbeat, push, more or cancel)")
			continue
		}
		if bit < 0 || bit >= bits {
			p.add(path, "bit %d outside the %d-bit flags field", bit, bits)
			continue
		}
		if other, dup := used[bit]; dup {
			p.add(path, "bit %d already used by %s", bit, other)
		}
		used[bit] = n
		for b := range len(c.flagWire) {
			if fl == 1<<b {
				c.flagWire[b] = 1 << bit
			}
		}
	}
}
