package fixed

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/codec"
)

func TestParseTestdata(t *testing.T) {
	for _, name := range []string{"mgp.yaml", "le16.yaml"} {
		c, err := Load(filepath.Join("testdata", name), 0)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if c.MaxFrameSize() != codec.DefaultMaxFrameSize {
			t.Fatalf("%s: max %d", name, c.MaxFrameSize())
		}
	}
	c := mustLoad(t, "mgp.yaml", 0)
	if c.Name() != "mgp-declarative" || c.fixed != 32 || c.prefix != 8 || c.minFrame != 33 || c.unit != 4 {
		t.Fatalf("mgp.yaml compiled to %s fixed=%d prefix=%d min=%d unit=%d", c.Name(), c.fixed, c.prefix, c.minFrame, c.unit)
	}
	c = mustLoad(t, "le16.yaml", 0)
	if c.fixed != 16 || c.prefix != 4 || c.minFrame != 16 {
		t.Fatalf("le16.yaml compiled to fixed=%d prefix=%d min=%d", c.fixed, c.prefix, c.minFrame)
	}
}

func mustLoad(t testing.TB, name string, max int) *Codec {
	t.Helper()
	c, err := Load(filepath.Join("testdata", name), max)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

const goodSpec = `
byte_order: big
fields:
  - {name: len, size: 4, role: body_len}
  - {name: cmd, size: 2, role: cmd}
`

func TestParseRejects(t *testing.T) {
	for _, tc := range []struct {
		name string
		doc  string
		want []string // substrings, each must appear
	}{
		{"empty", ``, []string{"empty description"}},
		{"unknown key", goodSpec + "colour: blue\n", []string{"colour", "not found"}},
		{"unknown field key", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len, sise: 2}\n", []string{"sise"}},
		{"byte order", strings.Replace(goodSpec, "big", "middle", 1), []string{`byte_order: must be big or little, not "middle"`}},
		{"no fields", "byte_order: big\n", []string{"fields: at least one field is required"}},
		{"bad size", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len}\n  - {name: b, size: 2}\n  - {name: c, size: 3}\n",
			[]string{"fields[2].size: must be 1, 2, 4 or 8"}},
		{"several problems joined", "byte_order: le\nfields:\n  - {name: a, size: 4, role: body_len}\n  - {size: 5}\n  - {name: a, size: 2, role: bogus}\n",
			[]string{"byte_order:", "fields[1].name: required", "fields[1].size: must be 1, 2, 4 or 8", `fields[2].name: "a" already names fields[0]`, `fields[2].role: unknown role "bogus"`}},
		{"const and role", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len, const: 1}\n", []string{"fields[0].const: a field has either a const or a role"}},
		{"const too wide", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len}\n  - {name: m, size: 1, const: 0x100}\n", []string{"fields[1].const: 0x100 does not fit 1 bytes"}},
		{"role too wide", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len}\n  - {name: c, size: 8, role: cmd}\n", []string{"fields[1].size: role cmd holds at most 4 bytes"}},
		{"duplicate role", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len}\n  - {name: c, size: 4, role: seq}\n  - {name: d, size: 4, role: seq}\n", []string{"fields[2].role: role seq already given to fields[1]"}},
		{"no length", "byte_order: big\nfields:\n  - {name: c, size: 4, role: cmd}\n", []string{"fields: one field needs role body_len or total_len"}},
		{"both lengths", "byte_order: big\nfields:\n  - {name: a, size: 4, role: body_len}\n  - {name: t, size: 4, role: total_len}\n", []string{"fields[1].role: body_len and total_len exclude each other"}},
		{"includes without body", "byte_order: big\nfields:\n  - {name: t, size: 4, role: total_len, includes: [header, trailer]}\n", []string{"fields[0].includes: must include body"}},
		{"includes unknown", "byte_order: big\nfields:\n  - {name: t, size: 4, role: total_len, includes: [body, footer, body]}\n", []string{`fields[0].includes[1]: must be header, body or trailer, not "footer"`, `fields[0].includes[2]: "body" listed twice`}},
		{"includes on other role", "byte_order: big\nfields:\n  - {name: t, size: 4, role: body_len, includes: [body]}\n", []string{"fields[0].includes: applies to the total_len role only"}},
		{"min on other role", "byte_order: big\nfields:\n  - {name: t, size: 4, role: body_len, min: 4}\n", []string{"fields[0]: min, max and multiple_of apply to the header_len role only"}},
		{"header_len min below fixed", "byte_order: big\nfields:\n  - {name: h, size: 2, role: header_len, min: 4}\n  - {name: b, size: 4, role: body_len}\n", []string{"fields[0].min: 4 is less than the fixed header size 6"}},
		{"header_len max too wide", "byte_order: big\nfields:\n  - {name: h, size: 1, role: header_len, max: 300}\n  - {name: b, size: 4, role: body_len}\n", []string{"fields[0].max: 300 does not fit 1 bytes"}},
		{"header_len max below min", "byte_order: big\nfields:\n  - {name: h, size: 2, role: header_len, min: 64, max: 32}\n  - {name: b, size: 4, role: body_len}\n", []string{"fields[0].max: 32 is less than min 64"}},
		{"extensions without header_len", goodSpec + "extensions: {align: 4}\n", []string{"extensions: need a field with role header_len"}},
		{"extensions format", "byte_order: big\nfields:\n  - {name: h, size: 2, role: header_len}\n  - {name: b, size: 4, role: body_len}\nextensions: {format: tlv8, align: 3}\n",
			[]string{`extensions.format: must be tlv16, not "tlv8"`, "extensions.align: must be 1, 2, 4 or 8"}},
		{"trailer empty", goodSpec + "trailer: {bytes: []}\n", []string{"trailer.bytes: at least one byte is required"}},
		{"trailer not a byte", goodSpec + "trailer: {bytes: [3, 256]}\n", []string{"trailer.bytes[1]: 256 is not a byte"}},
		{"flag bits without flags", goodSpec + "flag_bits: {response: 0}\n", []string{"flag_bits: need a field with role flags"}},
		{"flag bits", "byte_order: big\nfields:\n  - {name: b, size: 4, role: body_len}\n  - {name: f, size: 1, role: flags}\nflag_bits: {response: 8, oneway: 1, push: 1, urgent: 2}\n",
			[]string{"flag_bits.response: bit 8 outside the 8-bit flags field", "flag_bits.urgent: unknown flag", "bit 1 already used by"}},
		{"smallest frame over max", "byte_order: big\nfields:\n  - {name: b, size: 4, role: body_len}\n  - {name: u, size: 8, role: uin}\n  - {name: p, size: 8}\n  - {name: q, size: 8}\n", []string{"exceeds the maximum frame size 16"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			max := 0
			if tc.name == "smallest frame over max" {
				max = 16
			}
			_, err := Parse([]byte(tc.doc), max)
			if err == nil {
				t.Fatal("accepted")
			}
			if !errors.Is(err, ErrSpec) {
				t.Fatalf("not ErrSpec: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Fatalf("error %q\nlacks %q", err, w)
				}
			}
		})
	}
}

func TestFromNode(t *testing.T) {
	// An inline spec inside a bigger document, as in config.CodecSpec.
	var doc struct {
		Codecs []struct {
			Name string    `yaml:"name"`
			Spec yaml.Node `yaml:"spec"`
		} `yaml:"codecs"`
	}
	src, err := os.ReadFile(filepath.Join("testdata", "le16.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	inline := "codecs:\n  - name: le16\n    spec:\n" + indent(string(src), "      ") +
		"  - name: bad\n    spec:\n      byte_order: big\n      fields: [{name: x, size: 4, role: body_len, extra: 1}]\n"
	if err := yaml.Unmarshal([]byte(inline), &doc); err != nil {
		t.Fatal(err)
	}
	c, err := FromNode(&doc.Codecs[0].Spec, 1000)
	if err != nil {
		t.Fatal(err)
	}
	if c.MaxFrameSize() != 1000 || c.fixed != 16 {
		t.Fatalf("max %d fixed %d", c.MaxFrameSize(), c.fixed)
	}
	if _, err := FromNode(&doc.Codecs[1].Spec, 0); err == nil || !strings.Contains(err.Error(), "extra") {
		t.Fatalf("unknown key inline: %v", err)
	}
	if _, err := FromNode(&yaml.Node{}, 0); !errors.Is(err, ErrSpec) {
		t.Fatalf("empty node: %v", err)
	}
}

func indent(s, pre string) string {
	var b strings.Builder
	for _, l := range strings.SplitAfter(s, "\n") {
		if strings.TrimSpace(l) != "" {
			b.WriteString(pre + l)
		}
	}
	return b.String()
}

func TestLoadErrors(t *testing.T) {
	if _, err := Load(filepath.Join("testdata", "missing.yaml"), 0); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("missing: %v", err)
	}
	p := filepath.Join(t.TempDir(), "bad.yaml")
	if err := os.WriteFile(p, []byte("byte_order: big\nfields: []\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(p, 0); err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "fields:") {
		t.Fatalf("bad: %v", err)
	}
}

func TestRegister(t *testing.T) {
	c := mustLoad(t, "le16.yaml", 0)
	if err := Register("le16-test", c); err != nil {
		t.Fatal(err)
	}
	if err := Register("le16-test", c); !errors.Is(err, codec.ErrDuplicateCodec) {
		t.Fatalf("duplicate: %v", err)
	}
	got, err := codec.New("le16-test", 2048)
	if err != nil {
		t.Fatal(err)
	}
	if got.Name() != "le16-test" || got.MaxFrameSize() != 2048 || c.MaxFrameSize() != codec.DefaultMaxFrameSize {
		t.Fatalf("%s %d (original %d)", got.Name(), got.MaxFrameSize(), c.MaxFrameSize())
	}
	if _, err := codec.New("le16-test", 8); err == nil {
		t.Fatal("limit below the smallest frame accepted")
	}
}
