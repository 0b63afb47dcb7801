package fixed

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/codectest"
	"github.com/meshgate/meshgate/codec/mgp"
)

const fuzzMax = 1 << 16

// sameVerdict reports how two decode errors differ ("" if they are the
// same kind naming the same field and value).
func sameVerdict(a, b error) string {
	if (a == nil) != (b == nil) {
		return fmt.Sprintf("built-in %v, declarative %v", a, b)
	}
	if a == nil {
		return ""
	}
	var ta, tb *codec.TooLargeError
	if errors.As(a, &ta) || errors.As(b, &tb) {
		if !errors.As(a, &ta) || !errors.As(b, &tb) || *ta != *tb {
			return fmt.Sprintf("built-in %v, declarative %v", a, b)
		}
		return ""
	}
	var fa, fb *codec.FieldError
	if !errors.As(a, &fa) || !errors.As(b, &fb) || fa.Field != fb.Field || fa.Value != fb.Value {
		return fmt.Sprintf("built-in %v, declarative %v", a, b)
	}
	return ""
}

// differential decodes data with the built-in and the declarative MGP/1
// codec and fails on any difference: consumed bytes, need, error (kind,
// field, value), decoded frame, re-encoded bytes, and the whole-stream
// result.
func differential(t testing.TB, builtin *mgp.Codec, decl *Codec, data []byte) {
	t.Helper()
	var fa, fb codec.Frame
	na, needA, errA := builtin.Decode(data, &fa)
	nb, needB, errB := decl.Decode(data, &fb)
	if d := sameVerdict(errA, errB); d != "" {
		t.Fatalf("decode %x: %s", data, d)
	}
	if na != nb || needA != needB {
		t.Fatalf("decode %x: built-in n=%d need=%d, declarative n=%d need=%d", data, na, needA, nb, needB)
	}
	if na > 0 {
		if d := codectest.Diff(&fa, &fb); d != "" {
			t.Fatalf("decode %x: %s", data, d)
		}
		ea, errA := builtin.Append(nil, &fa)
		eb, errB := decl.Append(nil, &fb)
		if (errA == nil) != (errB == nil) || !bytes.Equal(ea, eb) {
			t.Fatalf("re-encode of %x:\nbuilt-in    %x %v\ndeclarative %x %v", data, ea, errA, eb, errB)
		}
	}
	fsA, restA, errA := codectest.DecodeAll(builtin, data)
	fsB, restB, errB := codectest.DecodeAll(decl, data)
	if d := sameVerdict(errA, errB); d != "" || restA != restB || len(fsA) != len(fsB) {
		t.Fatalf("stream %x: %d frames rest %d vs %d frames rest %d; %s", data, len(fsA), restA, len(fsB), restB, d)
	}
	for i := range fsA {
		if d := codectest.Diff(&fsA[i], &fsB[i]); d != "" {
			t.Fatalf("stream frame %d: %s", i, d)
		}
	}
}

// encodeDifferential encodes f with both codecs: identical bytes or both
// refuse.
func encodeDifferential(t testing.TB, builtin *mgp.Codec, decl *Codec, f *codec.Frame) {
	t.Helper()
	ea, errA := builtin.Append([]byte("p"), f)
	eb, errB := decl.Append([]byte("p"), f)
	if (errA == nil) != (errB == nil) || !bytes.Equal(ea, eb) {
		t.Fatalf("encode %+v:\nbuilt-in    %x %v\ndeclarative %x %v", f, ea, errA, eb, errB)
	}
	if errA != nil && (!errors.Is(errA, codec.ErrInvalidFrame) || !errors.Is(errB, codec.ErrInvalidFrame)) {
		t.Fatalf("encode errors %v / %v", errA, errB)
	}
}

// corpus is the shared differential corpus: the built-in codec's fuzz
// seeds, this package's seeds, and hand-written frames.
func corpus(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, dir := range []string{
		filepath.Join("..", "mgp", "testdata", "fuzz", "FuzzDecode"),
		filepath.Join("testdata", "fuzz", "FuzzDifferential"),
	} {
		seeds, names, err := codectest.ReadCorpus(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range names {
			out[dir+"/"+n] = seeds[n]
		}
	}
	out["golden"] = hx(mgpHex)
	var stream []byte
	for _, f := range frames(30, false) {
		stream, _ = mgp.New(0).Append(stream, &f)
	}
	out["stream"] = stream
	return out
}

func TestDifferentialCorpus(t *testing.T) {
	cs := corpus(t)
	if len(cs) < 20 {
		t.Fatalf("corpus has %d entries", len(cs))
	}
	for _, max := range []int{fuzzMax, 1024, 0} {
		builtin, decl := mgp.New(max), mustLoad(t, "mgp.yaml", max)
		for name, data := range cs {
			differential(t, builtin, decl, data)
			// Every prefix, and a one-bit flip at every position of short inputs.
			if len(data) <= 200 {
				for k := range len(data) {
					differential(t, builtin, decl, data[:k])
					flipped := bytes.Clone(data)
					flipped[k] ^= 1 << (k % 8)
					differential(t, builtin, decl, flipped)
				}
			}
			_ = name
		}
	}
}

func TestEncodeDifferential(t *testing.T) {
	builtin, decl := mgp.New(1024), mustLoad(t, "mgp.yaml", 1024)
	fs := frames(40, false)
	fs = append(fs,
		codec.Frame{},
		codec.Frame{Flags: 0xffff, Result: 0xffff, UIN: ^uint64(0), Cmd: ^uint32(0), Seq: ^uint32(0)},
		codec.Frame{Ext: []codec.Ext{{Key: 0, Value: []byte("pad")}}},
		codec.Frame{Ext: []codec.Ext{{Key: 1, Value: make([]byte, 0x10000)}}},
		codec.Frame{Ext: []codec.Ext{{Key: 1, Value: make([]byte, 4096-32-4)}}},
		codec.Frame{Ext: []codec.Ext{{Key: 1, Value: make([]byte, 4096-32-3)}}},
		codec.Frame{Body: make([]byte, 1024-33)},
		codec.Frame{Body: make([]byte, 1024-32)},
		codec.Frame{Ext: []codec.Ext{{Key: 1}}, Body: make([]byte, 1024-37)},
	)
	for i := range fs {
		encodeDifferential(t, builtin, decl, &fs[i])
	}
}

// FuzzDifferential compares the built-in and declarative MGP/1 codecs on
// arbitrary input.
func FuzzDifferential(f *testing.F) {
	for _, data := range corpus(f) {
		f.Add(data)
	}
	builtin, decl := mgp.New(fuzzMax), mustLoad(f, "mgp.yaml", fuzzMax)
	f.Fuzz(func(t *testing.T, data []byte) {
		differential(t, builtin, decl, data)
	})
}

// FuzzDecode runs the shared decode checks (no panic, typed errors, round
// trip, split invariance) on both shipped descriptions.
func FuzzDecode(f *testing.F) {
	f.Add(hx(le16Hex))
	f.Add(hx(mgpHex))
	cs := []*Codec{mustLoad(f, "le16.yaml", fuzzMax), mustLoad(f, "mgp.yaml", fuzzMax)}
	f.Fuzz(func(t *testing.T, data []byte) {
		for _, c := range cs {
			codectest.CheckDecode(t, c, data)
		}
	})
}

func TestSeedsPass(t *testing.T) {
	codectest.CheckSeeds(t, "FuzzDecode", 5, mustLoad(t, "le16.yaml", fuzzMax), mustLoad(t, "mgp.yaml", fuzzMax))
}

// TestWriteSeeds regenerates this package's seed corpora when
// FIXED_WRITE_SEEDS=1.
func TestWriteSeeds(t *testing.T) {
	if os.Getenv("FIXED_WRITE_SEEDS") != "1" {
		t.Skip("set FIXED_WRITE_SEEDS=1 to regenerate fuzz seeds")
	}
	le := mustLoad(t, "le16.yaml", 0)
	var le16Stream []byte
	for _, f := range frames(6, true) {
		le16Stream, _ = le.Append(le16Stream, &f)
	}
	codectest.WriteSeeds(t, "FuzzDecode", map[string][]byte{
		"le16-response":       hx(le16Hex),
		"le16-empty":          hx(le16Empty),
		"le16-stream":         le16Stream,
		"le16-length-short":   hx("0f000000" + "0100" + "40" + "a5" + "ffffffff" + "00000000"),
		"le16-bad-magic":      hx("10000000" + "0100" + "40" + "5a" + "ffffffff" + "00000000"),
		"le16-length-max":     hx("ffffffff"),
		"le16-truncated-body": hx(le16Hex)[:20],
		"mgp-golden":          hx(mgpHex),
	})
	codectest.WriteSeeds(t, "FuzzDifferential", map[string][]byte{
		"golden-twice":       hx(mgpHex + mgpHex),
		"reserved-bits":      hx("02" + "01" + "0020" + "00000000" + "00000001" + "00000002" + "0000000000000003" + "fff7" + "0001" + "deadbeef" + "03"),
		"padding-only":       hx("02" + "01" + "0030" + "00000000" + "00000001" + "00000002" + "0000000000000003" + "0000" + "0000" + "00000000" + "00000000000000000000000000000000" + "03"),
		"empty-ext-value":    hx("02" + "01" + "0024" + "00000000" + "00000001" + "00000002" + "0000000000000003" + "0000" + "0000" + "00000000" + "00070000" + "03"),
		"three-byte-tail":    hx("02" + "01" + "0028" + "00000000" + "00000001" + "00000002" + "0000000000000003" + "0000" + "0000" + "00000000" + "0007000161" + "000000" + "03"),
		"bad-etx-after-ext":  hx("02" + "01" + "0024" + "00000000" + "00000001" + "00000002" + "0000000000000003" + "0000" + "0000" + "00000000" + "00070000" + "02"),
		"le16-frame-as-mgp":  hx(le16Hex),
		"header-len-4096-ok": append(append(hx("02"+"01"+"1000"+"00000000"+"00000001"+"00000002"+"0000000000000003"+"0000"+"0000"+"00000000"), make([]byte, 4096-32)...), 0x03),
	})
}
