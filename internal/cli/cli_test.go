package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
)

func TestMain(t *testing.T) {
	s := New("prog", "blurb")
	var got []string
	s.Register(Command{Name: "ok", Short: "works", Run: func(_ context.Context, a []string) error { got = a; return nil }})
	s.Register(Command{Name: "bad", Short: "fails", Run: func(context.Context, []string) error { return errors.New("boom") }})
	s.Elsewhere = map[string]string{"bench": "prog-dev"}
	var out bytes.Buffer
	if c := s.Main([]string{"ok", "-x", "1"}, &out); c != 0 || strings.Join(got, " ") != "-x 1" {
		t.Fatalf("ok: code %d args %v", c, got)
	}
	if c := s.Main([]string{"bad"}, &out); c != 1 || !strings.Contains(out.String(), "prog bad: boom") {
		t.Fatalf("bad: code %d %q", c, out.String())
	}
	out.Reset()
	if c := s.Main(nil, &out); c != 2 || !strings.Contains(out.String(), "  bad ") || !strings.Contains(out.String(), "blurb") {
		t.Fatalf("usage: code %d %q", c, out.String())
	}
	out.Reset()
	if c := s.Main([]string{"bench"}, &out); c != 2 || !strings.Contains(out.String(), "prog-dev bench") {
		t.Fatalf("moved: code %d %q", c, out.String())
	}
	out.Reset()
	if c := s.Main([]string{"nope"}, &out); c != 2 || !strings.Contains(out.String(), `unknown command "nope"`) {
		t.Fatalf("unknown: code %d %q", c, out.String())
	}
	defer func() {
		if recover() == nil {
			t.Fatal("duplicate Register did not panic")
		}
	}()
	s.Register(Command{Name: "ok"})
}
