package addrfile

import (
	"os"
	"path/filepath"
	"reflect"
	"testing"
)

// TestWriteRead: what Write puts at path, Read gives back; a second Write
// replaces the document whole and leaves no temporary file; a missing
// directory is an error, not a partial file.
func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "addrs.json")
	for gen := uint64(1); gen <= 2; gen++ {
		want := Addrs{Generation: gen, Listeners: map[string]string{"in": "127.0.0.1:7000"}, Admin: "127.0.0.1:9901"}
		if err := Write(path, want); err != nil {
			t.Fatal(err)
		}
		got, err := Read(path)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("read back %+v, %v; want %+v", got, err, want)
		}
	}
	if ents, _ := os.ReadDir(dir); len(ents) != 1 {
		t.Fatalf("%d files in the directory, want only the document", len(ents))
	}
	if err := Write(filepath.Join(dir, "missing", "addrs.json"), Addrs{}); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
