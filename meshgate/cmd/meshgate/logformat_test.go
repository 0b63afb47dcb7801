package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
)

// TestLogFormat: -log-format json gives one JSON object per line, text the
// slog text format; anything else is refused before run starts anything.
func TestLogFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger(&buf, "json", slog.LevelInfo)
	if err != nil {
		t.Fatal(err)
	}
	l.With("component", "runtime").Info("listening", "listener", "mgp-in")
	l.Debug("per-frame detail") // below the level: dropped
	var m map[string]any
	if err := json.Unmarshal(bytes.TrimSpace(buf.Bytes()), &m); err != nil {
		t.Fatalf("not one JSON line: %q: %v", buf.String(), err)
	}
	if m["msg"] != "listening" || m["component"] != "runtime" || m["listener"] != "mgp-in" || m["level"] != "INFO" {
		t.Fatalf("fields %v", m)
	}
	buf.Reset()
	if l, err = newLogger(&buf, "text", slog.LevelInfo); err != nil {
		t.Fatal(err)
	}
	l.Info("hello", "k", "v")
	if !strings.Contains(buf.String(), "msg=hello k=v") {
		t.Fatalf("text: %q", buf.String())
	}
	err = runCmd(context.Background(), []string{"-c", "unused.yaml", "-log-format", "xml"})
	if err == nil || !strings.Contains(err.Error(), "-log-format") {
		t.Fatalf("bad format: %v", err)
	}
}
