package main

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"github.com/meshgate/meshgate/meshgate/runtime"
)

// writeAddressFile writes b as JSON to path atomically: a temporary file in
// the same directory, synced, then renamed over path, so a reader sees the
// previous document or the new one, never a partial one.
func writeAddressFile(path string, b runtime.BoundAddrs) error {
	data, err := json.MarshalIndent(b, "", "  ")
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("address file: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(append(data, '\n'))
	if err == nil {
		err = f.Chmod(0o644)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("address file: %w", err)
	}
	return nil
}
