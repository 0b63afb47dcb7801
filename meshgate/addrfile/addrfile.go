// Package addrfile is the document `meshgate run -address-file` writes:
// every address a running instance listens on, as bound (a configured
// port 0 shows the port the kernel chose), so a supervisor or a test can
// use port 0 and never race another process for a port (like Envoy's
// --admin-address-path). Standard library only: test harnesses outside
// the product read it too.
package addrfile

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Addrs is the document.
type Addrs struct {
	// Generation is the served config's generation (1 at start, +1 per
	// applied reload; the meshgate_config_generation metric).
	Generation uint64 `json:"generation"`
	// Listeners maps each listener's name to its bound host:port.
	Listeners map[string]string `json:"listeners"`
	// Admin is the admin listener (empty when there is none).
	Admin string `json:"admin,omitempty"`
	// Health is admin.health_address's listener, when configured.
	Health string `json:"health,omitempty"`
	// XDS is the embedded xDS server's address (host:port or the unix
	// socket path), when the config has an xds section.
	XDS string `json:"xds,omitempty"`
}

// Write writes a as JSON to path atomically: a temporary file in
// the same directory, synced, then renamed over path, so a reader sees the
// previous document or the new one, never a partial one.
func Write(path string, a Addrs) error {
	data, err := json.MarshalIndent(a, "", "  ")
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

// Read reads the document at path.
func Read(path string) (Addrs, error) {
	var a Addrs
	data, err := os.ReadFile(path)
	if err != nil {
		return a, err
	}
	if err := json.Unmarshal(data, &a); err != nil {
		return a, fmt.Errorf("address file %s: %w", path, err)
	}
	return a, nil
}
