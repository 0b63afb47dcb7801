package e2e

import (
	"log/slog"
	"os"
	"testing"
)

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
