//go:build linux

package memtrim

import (
	"os"
	"testing"
)

func TestParseSmaps(t *testing.T) {
	const exe = "/opt/meshgate bin/meshgate"
	smaps := `00400000-012c7000 r-xp 00000000 fe:00 123 /opt/meshgate bin/meshgate
Size:              15132 kB
Rss:               13400 kB
Anonymous:             0 kB
012c7000-02626000 r--p 00ec7000 fe:00 123 /opt/meshgate bin/meshgate
Rss:               12152 kB
Anonymous:             8 kB
02626000-026d9000 rw-p 02226000 fe:00 123 /opt/meshgate bin/meshgate
Rss:                 652 kB
Anonymous:           400 kB
7f00000000-7f00001000 r--p 00000000 fe:00 9 /usr/lib/libc.so.6
Rss:                   4 kB
Anonymous:             0 kB
7f10000000-7f10001000 ---p 00000000 fe:00 123 /opt/meshgate bin/meshgate
Rss:                   0 kB
`
	got, err := parseSmaps([]byte(smaps), exe)
	if err != nil {
		t.Fatal(err)
	}
	want := []mapping{
		{start: 0x400000, end: 0x12c7000, rss: 13400 << 10},
		{start: 0x12c7000, end: 0x2626000, rss: 12152 << 10, anonymous: 8 << 10},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d mappings %+v, want %+v", len(got), got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("mapping %d: got %+v, want %+v", i, got[i], want[i])
		}
	}
	if _, err := parseSmaps([]byte("zz-yy r-xp 0 0 0 "+exe+"\n"), exe); err == nil {
		t.Error("a malformed range was accepted")
	}
}

// TestExecutableDropsResidentPages runs the real thing on the test binary:
// its read-only mappings hold fewer resident bytes afterwards, and the
// process keeps running (the pages fault back in from the page cache).
func TestExecutableDropsResidentPages(t *testing.T) {
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		t.Fatal(err)
	}
	resident := func() int64 {
		t.Helper()
		maps, err := readMappings("/proc/self/smaps", exe)
		if err != nil {
			t.Fatal(err)
		}
		var n int64
		for _, m := range maps {
			n += m.rss
		}
		return n
	}
	before := resident()
	st, err := Executable()
	if err != nil {
		t.Fatal(err)
	}
	after := resident()
	if st.Mappings == 0 || st.Dropped <= 0 {
		t.Fatalf("nothing advised: %+v", st)
	}
	if after >= before {
		t.Fatalf("resident read-only bytes of the executable: %d before, %d after", before, after)
	}
	t.Logf("resident read-only bytes: %d KB before, %d KB after (%+v)", before>>10, after>>10, st)
}
