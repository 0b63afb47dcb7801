package accesslog

import (
	"bytes"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
)

func entry() *Entry {
	return &Entry{Listener: "mgp-in", Direction: "mgp_to_grpc", Route: "cmd 1 <-> /a.B/C", Cmd: 1, Method: "/a.B/C",
		UIN: 42, Upstream: "up", Endpoint: "127.0.0.1:1", Result: 8, Code: "NotFound",
		Duration: 1500 * time.Microsecond, BytesIn: 3, BytesOut: 4, TraceID: "4bf92f3577b34da6a3ce929d0e0e4736"}
}

func TestLineFields(t *testing.T) {
	var buf bytes.Buffer
	NewWriter(&buf, 1, false).Log(entry())
	var m map[string]any
	if err := json.Unmarshal(buf.Bytes(), &m); err != nil {
		t.Fatalf("%q: %v", buf.String(), err)
	}
	want := map[string]any{"msg": "request", "level": "INFO", "listener": "mgp-in", "direction": "mgp_to_grpc",
		"route": "cmd 1 <-> /a.B/C", "cmd": 1.0, "method": "/a.B/C", "uin": 42.0, "upstream": "up",
		"endpoint": "127.0.0.1:1", "result": 8.0, "code": "NotFound", "duration_ms": 1.5, "bytes_in": 3.0,
		"bytes_out": 4.0, "trace_id": "4bf92f3577b34da6a3ce929d0e0e4736"}
	for k, v := range want {
		if m[k] != v {
			t.Errorf("%s = %v, want %v", k, m[k], v)
		}
	}
	if _, ok := m["time"]; !ok {
		t.Error("no time")
	}
	if len(m) != len(want)+1 {
		t.Errorf("unexpected fields: %v", m)
	}
}

func TestHashUIN(t *testing.T) {
	var buf bytes.Buffer
	NewWriter(&buf, 1, true).Log(entry())
	if strings.Contains(buf.String(), `"uin":`) || !strings.Contains(buf.String(), `"uin_hash":"`+HashUIN(42)+`"`) {
		t.Fatalf("line %s", buf.String())
	}
	if HashUIN(42) == HashUIN(43) || len(HashUIN(42)) != 16 || HashUIN(0) != "0" {
		t.Fatalf("hash %q %q %q", HashUIN(42), HashUIN(43), HashUIN(0))
	}
}

func TestSampling(t *testing.T) {
	l := NewWriter(&bytes.Buffer{}, 0.25, false)
	n := 0
	for range 4000 {
		if l.Sampled() {
			n++
		}
	}
	if n < 800 || n > 1200 {
		t.Fatalf("sampled %d of 4000 at 0.25", n)
	}
	var nilLog *Logger
	if nilLog.Sampled() {
		t.Fatal("nil logger sampled")
	}
	nilLog.Log(entry()) // no panic
}

func TestFile(t *testing.T) {
	p := t.TempDir() + "/a.log"
	l, err := New(&config.AccessLog{Path: p}, p)
	if err != nil {
		t.Fatal(err)
	}
	l.Log(entry())
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := New(&config.AccessLog{}, t.TempDir()+"/no/such/dir/a.log"); err == nil {
		t.Fatal("opened a file in a missing directory")
	}
}
