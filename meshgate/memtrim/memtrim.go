// Package memtrim keeps the proxy's resident set to the code and read-only
// data it actually uses.
//
// The kernel maps a file-backed page together with its neighbours that are
// already in the page cache ("fault-around", 64 KB by default), so a Go
// binary whose file is cached ends up with most of its text and rodata
// counted in its RSS after start-up, used or not. Executable tells the
// kernel that the binary's read-only mappings are accessed randomly (no
// read-ahead) and drops the pages mapped so far; what the proxy touches
// afterwards is mapped again from the page cache, with the fault-around
// window of each first touch (MADV_RANDOM does not turn that off on Linux
// 6.18), so calling Executable again once start-up's last code has run
// drops more. Mappings holding private (copied-on-write) pages, such as
// relocated read-only data of a position-independent build, are left
// alone, as is every writable mapping.
package memtrim

// Stats is what Executable did.
type Stats struct {
	Mappings int   // read-only mappings of the executable advised
	Skipped  int   // read-only mappings left alone (private pages in them)
	Dropped  int64 // resident bytes unmapped
}
