package memtrim

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// Executable advises the kernel about the executable's read-only mappings
// and unmaps their resident pages (see the package doc).
func Executable() (Stats, error) {
	var st Stats
	exe, err := os.Readlink("/proc/self/exe")
	if err != nil {
		return st, fmt.Errorf("memtrim: %w", err)
	}
	maps, err := readMappings("/proc/self/smaps", exe)
	if err != nil {
		return st, err
	}
	for _, m := range maps {
		if m.anonymous > 0 {
			st.Skipped++
			continue
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_RANDOM); e != 0 {
			return st, fmt.Errorf("memtrim: madvise(MADV_RANDOM) %x-%x: %w", m.start, m.end, e)
		}
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, m.start, m.end-m.start, unix.MADV_DONTNEED); e != 0 {
			return st, fmt.Errorf("memtrim: madvise(MADV_DONTNEED) %x-%x: %w", m.start, m.end, e)
		}
		st.Mappings++
		st.Dropped += m.rss
	}
	return st, nil
}

type mapping struct {
	start, end     uintptr
	rss, anonymous int64 // bytes
}

// readMappings returns the mappings of file path that are not writable,
// from an smaps file.
func readMappings(smaps, path string) ([]mapping, error) {
	b, err := os.ReadFile(smaps)
	if err != nil {
		return nil, fmt.Errorf("memtrim: %w", err)
	}
	return parseSmaps(b, path)
}

func parseSmaps(b []byte, path string) ([]mapping, error) {
	var out []mapping
	var cur *mapping
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if !strings.HasSuffix(f[0], ":") { // a mapping header: range perms offset dev inode [path]
			cur = nil
			if len(f) < 6 || strings.Join(f[5:], " ") != path || len(f[1]) < 2 || f[1][1] == 'w' || f[1][0] != 'r' {
				continue
			}
			lo, hi, ok := strings.Cut(f[0], "-")
			if !ok {
				return nil, fmt.Errorf("memtrim: bad smaps range %q", f[0])
			}
			s, err1 := strconv.ParseUint(lo, 16, 64)
			e, err2 := strconv.ParseUint(hi, 16, 64)
			if err1 != nil || err2 != nil || e <= s {
				return nil, fmt.Errorf("memtrim: bad smaps range %q", f[0])
			}
			out = append(out, mapping{start: uintptr(s), end: uintptr(e)})
			cur = &out[len(out)-1]
			continue
		}
		if cur == nil || len(f) < 3 || f[2] != "kB" {
			continue
		}
		n, err := strconv.ParseInt(f[1], 10, 64)
		if err != nil {
			continue
		}
		switch f[0] {
		case "Rss:":
			cur.rss = n << 10
		case "Anonymous:":
			cur.anonymous = n << 10
		}
	}
	return out, sc.Err()
}
