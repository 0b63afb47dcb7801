package main

import (
	"fmt"
	"io"
	"log/slog"
)

// newLogger returns the process logger for -log-format (text or json) at
// level lvl, writing to w. Request paths log nothing above Debug per frame;
// the access log (access_log in the config) is separate.
func newLogger(w io.Writer, format string, lvl slog.Level) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: lvl}
	switch format {
	case "", "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, fmt.Errorf("-log-format: must be text or json, got %q", format)
}
