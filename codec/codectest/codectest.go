// Package codectest holds helpers shared by codec tests: annotated hex
// frames, chunking readers that split a stream at arbitrary points, frame
// comparison and fuzz-corpus loading, the reference MGP/1 frame both the
// MGP/1 codec and the declarative mgp.yaml must reproduce, and the checks
// every codec shares. It is imported by tests only.
package codectest

import (
	"bytes"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/codec"
)

// MGPHelloHex is an MGP/1 request with one extension (caller "svc")
// padded to 40 header bytes and a 5-byte body: MGPHelloFrame on the wire.
const MGPHelloHex = "02" + // stx
	"01" + // version
	"0028" + // header_len 40 = 32 + 8
	"00000005" + // body_len 5
	"00000007" + // cmd 7
	"00000009" + // seq 9
	"000000000000002a" + // uin 42
	"0002" + // flags ONEWAY
	"0000" + // result
	"00000000" + // reserved
	"0004" + // ext key 4 (caller)
	"0003" + // ext len 3
	"737663" + // "svc"
	"00" + // padding to a multiple of 4
	"68656c6c6f" + // body "hello"
	"03" // etx

// MGPHelloFrame is the frame MGPHelloHex encodes.
var MGPHelloFrame = codec.Frame{Cmd: 7, Seq: 9, UIN: 42, Flags: codec.FlagOneway,
	Ext: []codec.Ext{{Key: codec.ExtCaller, Value: []byte("svc")}}, Body: []byte("hello")}

// Hex decodes s, ignoring spaces; it panics on bad input (test data only).
func Hex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(fmt.Sprintf("codectest.Hex(%q): %v", s, err))
	}
	return b
}

// ChunkReader returns its data in reads of the given sizes, cycling through
// them (a size <= 0 returns everything left). It returns io.EOF after the
// last byte.
type ChunkReader struct {
	data  []byte
	sizes []int
	i     int
	Reads int // number of Read calls that returned data
}

// NewChunkReader returns a reader delivering data in chunks of sizes.
func NewChunkReader(data []byte, sizes ...int) *ChunkReader {
	if len(sizes) == 0 {
		sizes = []int{0}
	}
	return &ChunkReader{data: data, sizes: sizes}
}

// Read implements io.Reader.
func (r *ChunkReader) Read(p []byte) (int, error) {
	if len(r.data) == 0 {
		return 0, io.EOF
	}
	n := r.sizes[r.i%len(r.sizes)]
	r.i++
	if n <= 0 || n > len(r.data) {
		n = len(r.data)
	}
	n = copy(p, r.data[:n])
	r.data = r.data[n:]
	r.Reads++
	return n, nil
}

// Clone deep-copies f so that it outlives the decode buffer.
func Clone(f *codec.Frame) codec.Frame {
	g := *f
	g.Body = bytes.Clone(f.Body)
	g.Ext = nil
	for _, e := range f.Ext {
		g.Ext = append(g.Ext, codec.Ext{Key: e.Key, Value: bytes.Clone(e.Value)})
	}
	return g
}

// Diff describes how a and b differ ("" if equal). Nil and empty byte
// slices are equal.
func Diff(a, b *codec.Frame) string {
	var d []string
	if a.Cmd != b.Cmd {
		d = append(d, fmt.Sprintf("cmd %d != %d", a.Cmd, b.Cmd))
	}
	if a.Seq != b.Seq {
		d = append(d, fmt.Sprintf("seq %d != %d", a.Seq, b.Seq))
	}
	if a.UIN != b.UIN {
		d = append(d, fmt.Sprintf("uin %d != %d", a.UIN, b.UIN))
	}
	if a.Flags != b.Flags {
		d = append(d, fmt.Sprintf("flags %#x != %#x", a.Flags, b.Flags))
	}
	if a.Result != b.Result {
		d = append(d, fmt.Sprintf("result %d != %d", a.Result, b.Result))
	}
	if !bytes.Equal(a.Body, b.Body) {
		d = append(d, fmt.Sprintf("body %q != %q", a.Body, b.Body))
	}
	if len(a.Ext) != len(b.Ext) {
		d = append(d, fmt.Sprintf("%d ext != %d ext", len(a.Ext), len(b.Ext)))
	} else {
		for i := range a.Ext {
			if a.Ext[i].Key != b.Ext[i].Key || !bytes.Equal(a.Ext[i].Value, b.Ext[i].Value) {
				d = append(d, fmt.Sprintf("ext[%d] %d=%q != %d=%q", i, a.Ext[i].Key, a.Ext[i].Value, b.Ext[i].Key, b.Ext[i].Value))
			}
		}
	}
	return strings.Join(d, "; ")
}

// DecodeAll decodes every whole frame of buf with one-shot Decode calls.
// rest is the number of trailing bytes that do not form a whole frame; err
// is the first decode error.
func DecodeAll(c codec.Codec, buf []byte) (frames []codec.Frame, rest int, err error) {
	var f codec.Frame
	for len(buf) > 0 {
		n, need, err := c.Decode(buf, &f)
		if err != nil {
			return frames, len(buf), err
		}
		if n == 0 {
			if need <= len(buf) {
				return frames, len(buf), fmt.Errorf("codectest: need %d <= buffered %d", need, len(buf))
			}
			return frames, len(buf), nil
		}
		frames = append(frames, Clone(&f))
		buf = buf[n:]
	}
	return frames, 0, nil
}

// ReadAll reads frames from r through a codec.Reader with an initial
// buffer of bufSize until an error; io.EOF at a frame boundary is returned
// as a nil error.
func ReadAll(c codec.Codec, r io.Reader, bufSize int) ([]codec.Frame, error) {
	rd := codec.NewReader(r, c, bufSize)
	var frames []codec.Frame
	var f codec.Frame
	for {
		err := rd.ReadFrame(&f)
		if errors.Is(err, io.EOF) {
			return frames, nil
		}
		if err != nil {
			return frames, err
		}
		frames = append(frames, Clone(&f))
	}
}

// CorpusHeader starts every file of a go test fuzz corpus.
const CorpusHeader = "go test fuzz v1\n"

// CorpusFile renders b as a one-argument ([]byte) fuzz corpus file.
func CorpusFile(b []byte) []byte {
	return []byte(CorpusHeader + "[]byte(" + strconv.Quote(string(b)) + ")\n")
}

// WriteSeeds writes each seed as a corpus file (CorpusFile) named by its
// key into testdata/fuzz/target, the directory go test's fuzzer starts
// from; it fails the test on error.
func WriteSeeds(t testing.TB, target string, seeds map[string][]byte) {
	t.Helper()
	dir := filepath.Join("testdata", "fuzz", target)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, b := range seeds {
		if err := os.WriteFile(filepath.Join(dir, name), CorpusFile(b), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// ReadCorpus loads every one-argument ([]byte) corpus file in dir, sorted
// by name.
func ReadCorpus(dir string) (map[string][]byte, []string, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, nil, err
	}
	out := map[string][]byte{}
	var names []string
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		raw, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, nil, err
		}
		s, ok := strings.CutPrefix(string(raw), CorpusHeader)
		s = strings.TrimSpace(s)
		if !ok || !strings.HasPrefix(s, "[]byte(") || !strings.HasSuffix(s, ")") {
			return nil, nil, fmt.Errorf("%s: not a []byte corpus file", e.Name())
		}
		v, err := strconv.Unquote(s[len("[]byte(") : len(s)-1])
		if err != nil {
			return nil, nil, fmt.Errorf("%s: %w", e.Name(), err)
		}
		out[e.Name()] = []byte(v)
		names = append(names, e.Name())
	}
	sort.Strings(names)
	return out, names, nil
}

// CheckGolden checks a codec against one golden frame: Append (after a
// prefix, which it must keep) writes exactly wire; Decode of wire, alone
// and followed by the bytes of a next frame, into a frame holding stale
// state, consumes exactly wire and yields want.
func CheckGolden(t testing.TB, c codec.Codec, wire []byte, want *codec.Frame) {
	t.Helper()
	got, err := c.Append([]byte("prefix"), want)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got[6:], wire) || string(got[:6]) != "prefix" {
		t.Fatalf("Append:\n got %x\nwant prefix%x", got, wire)
	}
	for _, in := range [][]byte{wire, append(bytes.Clone(wire), 0x02, 0x01, 0xee)} {
		f := codec.Frame{Result: 7, Ext: []codec.Ext{{Key: 9}}} // stale state is cleared
		n, need, err := c.Decode(in, &f)
		if err != nil || n != len(wire) || need != 0 {
			t.Fatalf("Decode (%d bytes): n=%d need=%d err=%v", len(in), n, need, err)
		}
		if d := Diff(&f, want); d != "" {
			t.Fatal(d)
		}
	}
}

// CheckTooLarge checks that Decode rejects prefix, the start of a frame
// whose header declares it oversized, with codec.ErrFrameTooLarge before
// the rest arrives, allocating nothing but the error.
func CheckTooLarge(t testing.TB, c codec.Codec, prefix []byte) {
	t.Helper()
	var f codec.Frame
	var err error
	allocs := testing.AllocsPerRun(100, func() { _, _, err = c.Decode(prefix, &f) })
	if !errors.Is(err, codec.ErrFrameTooLarge) {
		t.Fatalf("Decode(%x): %v, want ErrFrameTooLarge", prefix, err)
	}
	if allocs > 1 { // the error value
		t.Fatalf("Decode(%x): %v allocs", prefix, allocs)
	}
}

// CheckSeeds runs CheckDecode with each codec on every seed of the
// committed corpus testdata/fuzz/target (one subtest per seed); the corpus
// must hold at least min seeds.
func CheckSeeds(t *testing.T, target string, min int, cs ...codec.Codec) {
	t.Helper()
	seeds, names, err := ReadCorpus(filepath.Join("testdata", "fuzz", target))
	if err != nil {
		t.Fatal(err)
	}
	if len(names) < min {
		t.Fatalf("%d seeds", len(names))
	}
	for _, n := range names {
		t.Run(n, func(t *testing.T) {
			for _, c := range cs {
				CheckDecode(t, c, seeds[n])
			}
		})
	}
}

// CheckDecode is the body of every codec's FuzzDecode: Decode must not
// panic and must return a typed error, need more (need > len(data)) or a
// frame; a decoded frame must re-encode (no larger, stably) and decode to the
// same frame; and reading data through a codec.Reader in arbitrary chunks
// must give the same frames and the same final verdict as one-shot Decode
// calls.
func CheckDecode(t testing.TB, c codec.Codec, data []byte) {
	t.Helper()
	var fr codec.Frame
	n, need, err := c.Decode(data, &fr)
	switch {
	case err != nil:
		if !errors.Is(err, codec.ErrMalformed) {
			t.Fatalf("untyped error %v", err)
		}
		if n != 0 {
			t.Fatalf("n=%d with error", n)
		}
	case n == 0:
		if need <= len(data) {
			t.Fatalf("need %d <= len %d", need, len(data))
		}
	default:
		if n > len(data) || n > c.MaxFrameSize() {
			t.Fatalf("n=%d len=%d", n, len(data))
		}
		enc, err := c.Append(nil, &fr)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		if len(enc) > n {
			t.Fatalf("re-encoding grew from %d to %d bytes", n, len(enc))
		}
		var fr2 codec.Frame
		n2, _, err := c.Decode(enc, &fr2)
		if err != nil || n2 != len(enc) {
			t.Fatalf("decode re-encoded: n=%d/%d err=%v", n2, len(enc), err)
		}
		if d := Diff(&fr, &fr2); d != "" {
			t.Fatalf("round trip: %s", d)
		}
		enc2, _ := c.Append(nil, &fr2)
		if string(enc2) != string(enc) {
			t.Fatalf("encode not stable:\n%x\n%x", enc, enc2)
		}
	}
	// Split invariance.
	one, rest, oneErr := DecodeAll(c, data)
	sizes := []int{1}
	for i := 0; i+1 < len(data) && i < 8; i++ {
		sizes = append(sizes, int(data[i]%17)+1)
	}
	got, rdErr := ReadAll(c, NewChunkReader(data, sizes...), 64)
	if len(got) != len(one) {
		t.Fatalf("reader %d frames, one-shot %d", len(got), len(one))
	}
	for i := range got {
		if d := Diff(&got[i], &one[i]); d != "" {
			t.Fatalf("frame %d: %s", i, d)
		}
	}
	switch {
	case oneErr != nil:
		if rdErr == nil || rdErr.Error() != oneErr.Error() {
			t.Fatalf("reader err %v, one-shot %v", rdErr, oneErr)
		}
	case rest > 0:
		if !errors.Is(rdErr, io.ErrUnexpectedEOF) {
			t.Fatalf("reader err %v, want unexpected EOF (rest %d)", rdErr, rest)
		}
	default:
		if rdErr != nil {
			t.Fatalf("reader err %v", rdErr)
		}
	}
}

// CheckMalformed checks a rejection: err is codec.ErrMalformed and, when
// tooLarge, a *codec.TooLargeError (codec.ErrFrameTooLarge); otherwise a
// *codec.FieldError naming field and not a size error.
func CheckMalformed(t testing.TB, err error, tooLarge bool, field string) {
	t.Helper()
	if !errors.Is(err, codec.ErrMalformed) {
		t.Fatalf("err=%v, want ErrMalformed", err)
	}
	var tl *codec.TooLargeError
	if tooLarge {
		if !errors.Is(err, codec.ErrFrameTooLarge) || !errors.As(err, &tl) {
			t.Fatalf("err=%v, want ErrFrameTooLarge", err)
		}
		return
	}
	var fe *codec.FieldError
	if !errors.As(err, &fe) || fe.Field != field {
		t.Fatalf("err=%v, want *FieldError for %q", err, field)
	}
	if errors.Is(err, codec.ErrFrameTooLarge) || errors.As(err, &tl) {
		t.Fatalf("err=%v is not a size error", err)
	}
}

// CheckZeroAllocs checks that Decode of f's encoding into a frame that
// already held one, and Append of f into a buffer large enough, allocate
// nothing.
func CheckZeroAllocs(t testing.TB, c codec.Codec, f *codec.Frame) {
	t.Helper()
	wire, err := c.Append(nil, f)
	if err != nil {
		t.Fatal(err)
	}
	var got codec.Frame
	if a := testing.AllocsPerRun(200, func() {
		if _, _, err := c.Decode(wire, &got); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Decode: %v allocs", a)
	}
	dst := make([]byte, 0, len(wire))
	if a := testing.AllocsPerRun(200, func() {
		if dst, err = c.Append(dst[:0], f); err != nil {
			t.Fatal(err)
		}
	}); a != 0 {
		t.Fatalf("Append: %v allocs", a)
	}
}
