package mgp

import (
	"os"
	"testing"

	"github.com/meshgate/meshgate/codec/codectest"
)

// fuzzMax keeps fuzz inputs able to hit the size limit.
const fuzzMax = 1 << 16

// FuzzDecode checks that Decode never panics, that a decoded frame
// re-encodes and decodes to the same frame, and that reading the input
// through a Reader with arbitrary chunking gives the same frames and the
// same final verdict as one-shot decoding.
func FuzzDecode(f *testing.F) {
	f.Add(hx(helloHex))
	f.Add(hx(emptyHex + errHex))
	f.Fuzz(func(t *testing.T, data []byte) {
		codectest.CheckDecode(t, New(fuzzMax), data)
	})
}

// TestWriteSeeds regenerates testdata/fuzz/FuzzDecode when
// MGP_WRITE_SEEDS=1; the committed files are what the fuzzer starts from.
func TestWriteSeeds(t *testing.T) {
	if os.Getenv("MGP_WRITE_SEEDS") != "1" {
		t.Skip("set MGP_WRITE_SEEDS=1 to regenerate fuzz seeds")
	}
	seeds := map[string][]byte{
		"hello":           hx(helloHex),
		"empty-heartbeat": hx(emptyHex),
		"error-response":  hx(errHex),
		"three-frames":    hx(helloHex + emptyHex + errHex),
		"truncated":       hx(helloHex)[:20],
		"partial-second":  hx(emptyHex + helloHex[:40]),
	}
	b, _ := stream(t, 8)
	seeds["stream-8"] = b
	for _, m := range malformed {
		seeds["malformed-"+slug(m.name)] = hx(m.wire)
	}
	codectest.WriteSeeds(t, "FuzzDecode", seeds)
}

func slug(s string) string {
	out := []byte{}
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9':
			out = append(out, c)
		case c >= 'A' && c <= 'Z':
			out = append(out, c+'a'-'A')
		case len(out) > 0 && out[len(out)-1] != '-':
			out = append(out, '-')
		}
	}
	for len(out) > 0 && out[len(out)-1] == '-' {
		out = out[:len(out)-1]
	}
	return string(out)
}

// TestSeedsLoad makes sure the committed corpus parses and passes.
func TestSeedsLoad(t *testing.T) {
	codectest.CheckSeeds(t, "FuzzDecode", 5, New(fuzzMax))
}
