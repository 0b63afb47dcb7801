// Package accesslog writes one structured (JSON) line per bridged request
// with log/slog's JSON handler: listener, direction, route, cmd, method,
// uin (or its hash), upstream, endpoint, result, gRPC code, duration, bytes
// in and out, and the trace id. It is off unless configured (access_log in
// the config), and samples when asked to.
//
// A line looks like:
//
//	{"time":"2026-11-30T07:20:00.123Z","msg":"request","listener":"mgp-in",
//	 "direction":"mgp_to_grpc","route":"cmd 1 -> /demo.Demo/Echo","cmd":1,
//	 "method":"/demo.Demo/Echo","uin":42,"upstream":"demo","endpoint":"127.0.0.1:7101",
//	 "result":0,"code":"OK","duration_ms":0.412,"bytes_in":5,"bytes_out":5,
//	 "trace_id":"4bf92f3577b34da6a3ce929d0e0e4736"}
package accesslog

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"os"
	"strconv"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
)

// ErrOpen wraps a failure to open the access log file.
var ErrOpen = errors.New("accesslog: open")

// Entry is one request.
type Entry struct {
	Listener  string
	Direction string
	Route     string
	Cmd       uint32
	Method    string
	UIN       uint64
	Upstream  string
	Endpoint  string
	Result    uint16
	Code      string
	Duration  time.Duration
	BytesIn   int
	BytesOut  int
	TraceID   string
}

// Logger writes entries. A nil *Logger logs nothing.
type Logger struct {
	h      slog.Handler
	ratio  float64
	hash   bool
	closer io.Closer
}

// New opens the configured destination. path is resolved by the caller.
func New(c *config.AccessLog, path string) (*Logger, error) {
	var w io.Writer
	var closer io.Closer
	switch path {
	case "", "stdout":
		w = os.Stdout
	case "stderr":
		w = os.Stderr
	default:
		f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrOpen, err)
		}
		w, closer = f, f
	}
	l := NewWriter(w, c.Ratio(), c.HashUIN)
	l.closer = closer
	return l, nil
}

// NewWriter logs to w (tests, embedding). ratio is the sampled fraction.
func NewWriter(w io.Writer, ratio float64, hashUIN bool) *Logger {
	return &Logger{h: slog.NewJSONHandler(w, nil), ratio: ratio, hash: hashUIN}
}

// Sampled reports whether the next request should be logged.
func (l *Logger) Sampled() bool {
	if l == nil {
		return false
	}
	return l.ratio >= 1 || rand.Float64() < l.ratio
}

// Log writes e (call only when Sampled said yes).
func (l *Logger) Log(e *Entry) {
	if l == nil {
		return
	}
	r := slog.NewRecord(time.Now(), slog.LevelInfo, "request", 0)
	r.AddAttrs(
		slog.String("listener", e.Listener),
		slog.String("direction", e.Direction),
		slog.String("route", e.Route),
		slog.Uint64("cmd", uint64(e.Cmd)),
		slog.String("method", e.Method),
	)
	if l.hash {
		r.AddAttrs(slog.String("uin_hash", HashUIN(e.UIN)))
	} else {
		r.AddAttrs(slog.Uint64("uin", e.UIN))
	}
	r.AddAttrs(
		slog.String("upstream", e.Upstream),
		slog.String("endpoint", e.Endpoint),
		slog.Int("result", int(e.Result)),
		slog.String("code", e.Code),
		slog.Float64("duration_ms", float64(e.Duration.Microseconds())/1000),
		slog.Int("bytes_in", e.BytesIn),
		slog.Int("bytes_out", e.BytesOut),
	)
	if e.TraceID != "" {
		r.AddAttrs(slog.String("trace_id", e.TraceID))
	}
	_ = l.h.Handle(context.Background(), r)
}

// Close closes the file, if any.
func (l *Logger) Close() error {
	if l == nil || l.closer == nil {
		return nil
	}
	return l.closer.Close()
}

// HashUIN is the logged form of a uin under hash_uin: the first 16 hex
// digits of sha256 of its decimal form (0 stays "0": no user).
func HashUIN(uin uint64) string {
	if uin == 0 {
		return "0"
	}
	sum := sha256.Sum256(strconv.AppendUint(nil, uin, 10))
	return hex.EncodeToString(sum[:8])
}
