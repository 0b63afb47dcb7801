package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/meshgate/meshgate/meshgate/admin"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/migrate"
)

// meshgate migrate against a real admin server on loopback.
func TestMigrateCommand(t *testing.T) {
	m := admin.NewMetrics()
	mc := migrate.New(m.Registry, nil)
	rule, err := mc.Rule("in/1", &config.Split{Backends: []config.SplitBackend{{Upstream: "legacy"}, {Upstream: "new", Percent: 12.5}}})
	if err != nil {
		t.Fatal(err)
	}
	mc.Publish([]migrate.Route{{ID: "in/1", Listener: "in", Label: "1", Rule: rule}})
	m.Route("in", "1", "new").Observe(codes.Unavailable, 3*time.Millisecond)
	s := admin.New(m, nil, nil, admin.WithMigrate(mc))
	if err := s.Listen("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer s.Shutdown(t.Context())
	addr := s.Addr().String()
	run := func(args ...string) (string, error) {
		var out bytes.Buffer
		migrateOut = &out
		defer func() { migrateOut = nil }()
		err := migrateCmd(t.Context(), args)
		return out.String(), err
	}
	out, err := run("status", "-admin", addr)
	if err != nil || !strings.Contains(out, "in/1") || !strings.Contains(out, "12.50%") || !strings.Contains(out, "87.50%") {
		t.Fatalf("status: %v\n%s", err, out)
	}
	out, err = run("rollback", "in/1", "-admin", addr, "-reason", "p99 up")
	if err != nil || !strings.Contains(out, "every request now goes to legacy") {
		t.Fatalf("rollback: %v\n%s", err, out)
	}
	out, _ = run("status", "-admin", addr)
	if !strings.Contains(out, "OVERRIDE→legacy") || !strings.Contains(out, "p99 up") {
		t.Fatalf("status after rollback:\n%s", out)
	}
	if _, err := run("rollback", "-admin", addr, "in/1", "-to", "nope"); err == nil || !strings.Contains(err.Error(), `no backend "nope"`) {
		t.Fatalf("rollback to unknown backend: %v", err)
	}
	if out, err := run("clear", "in/1", "-admin", addr); err != nil || !strings.Contains(out, "override cleared") {
		t.Fatalf("clear: %v %s", err, out)
	}
	if _, err := run("clear", "in/1", "-admin", addr); err == nil || !strings.Contains(err.Error(), "404") {
		t.Fatalf("second clear: %v", err)
	}
	if out, err := run("diffs", "-admin", addr); err != nil || !strings.Contains(out, "no shadow mismatches") {
		t.Fatalf("diffs: %v %s", err, out)
	}
	if _, err := run("rollback", "-admin", addr); err == nil {
		t.Fatal("rollback without a route accepted")
	}
}

// TestMigrateHelp: asking for help is not an error (exit 0); no verb is.
func TestMigrateHelp(t *testing.T) {
	for _, args := range [][]string{{"-h"}, {"--help"}, {"help"}, {"status", "-h"}} {
		if err := migrateCmd(context.Background(), args); err != nil {
			t.Errorf("migrate %v: %v, want nil", args, err)
		}
	}
	if err := migrateCmd(context.Background(), nil); !errors.Is(err, errUsage) {
		t.Errorf("migrate with no verb: %v, want errUsage", err)
	}
}

// TestMigrateUsageNamesEveryFlag: `meshgate migrate -h` documents every
// flag the verbs accept (it once left out -reason).
func TestMigrateUsageNamesEveryFlag(t *testing.T) {
	fs, _ := migrateFlags("rollback")
	fs.VisitAll(func(f *flag.Flag) {
		if !strings.Contains(migrateUsage, "-"+f.Name+" ") && !strings.Contains(migrateUsage, "-"+f.Name+"]") {
			t.Errorf("migrate usage does not mention -%s", f.Name)
		}
	})
}
