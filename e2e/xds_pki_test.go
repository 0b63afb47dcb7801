package e2e

import (
	"log/slog"
	"os"
	"testing"

	"github.com/meshgate/meshgate/internal/testkit/xdstest"
)

// serverYAML is the xds.tls line of a config for pki's control plane
// (absolute paths).
func serverYAML(pki *xdstest.PKI) string { return "tls: " + pki.Server().YAML() }

type slogLogger = slog.Logger

// newSlog logs to the test log (visible with -v or on failure) at Info;
// XDS_E2E_DEBUG=1 lowers it to Debug.
func newSlog(t *testing.T, component string) *slog.Logger {
	lvl := slog.LevelInfo
	if os.Getenv("XDS_E2E_DEBUG") == "1" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: lvl})).With("component", component)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
