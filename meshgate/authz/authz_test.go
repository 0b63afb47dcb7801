package authz

import (
	"context"
	"crypto/x509"
	"errors"
	"net/url"
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
)

var policy = New(&config.Authz{Allow: []config.AuthzRule{
	{KeyIDs: []uint32{1, 2}, Cmds: []uint32{10, 11}},
	{KeyIDs: []uint32{3}, Cmds: []uint32{12}},
	{Identities: []string{"spiffe://td/web", "dns:Web.Svc"}, Methods: []string{"/a.B/C", "/x.Y/*"}},
}})

func TestAllowCmd(t *testing.T) {
	for _, c := range []struct {
		key, cmd uint32
		ok       bool
	}{{1, 10, true}, {2, 11, true}, {3, 12, true}, {3, 10, false}, {1, 12, false}, {4, 10, false}, {0, 0, false}} {
		if got := policy.AllowCmd(c.key, c.cmd); got != c.ok {
			t.Errorf("AllowCmd(%d, %d) = %v", c.key, c.cmd, got)
		}
	}
	var none *Policy
	if !none.AllowCmd(9, 9) || !none.AllowMethod("x", "/a.B/C") || none.Rules() != 0 || policy.Rules() != 3 {
		t.Fatal("nil policy must allow everything")
	}
}

func TestAllowMethod(t *testing.T) {
	for _, c := range []struct {
		id, m string
		ok    bool
	}{
		{"spiffe://td/web", "/a.B/C", true}, {"spiffe://td/web", "/a.B/D", false},
		{"spiffe://td/web", "/x.Y/Any", true}, {"spiffe://td/web", "/x.Yz/Any", false},
		{"dns:web.svc", "/x.Y/Z", true}, {"dns:WEB.SVC", "/a.B/C", true}, {"web.svc", "/x.Y/Z", false},
		{"spiffe://TD/web", "/a.B/C", false}, // URIs compare exactly
		{"dns:other.svc", "/a.B/C", false}, {"", "/a.B/C", false},
	} {
		if got := policy.AllowMethod(c.id, c.m); got != c.ok {
			t.Errorf("AllowMethod(%q, %q) = %v", c.id, c.m, got)
		}
	}
	u, _ := url.Parse("spiffe://td/web")
	if !policy.AllowCert(&x509.Certificate{URIs: []*url.URL{u}}, "/a.B/C") ||
		!policy.AllowCert(&x509.Certificate{DNSNames: []string{"nope", "web.svc"}}, "/x.Y/Q") ||
		policy.AllowCert(&x509.Certificate{DNSNames: []string{"nope"}}, "/a.B/C") ||
		policy.AllowCert(nil, "/a.B/C") {
		t.Fatal("AllowCert")
	}
	if _, err := PeerCert(context.Background()); !errors.Is(err, ErrNoPeerCert) {
		t.Fatal(err)
	}
}

// TestAllowZeroAlloc: the per-request checks allocate nothing.
func TestAllowZeroAlloc(t *testing.T) {
	if n := testing.AllocsPerRun(100, func() {
		policy.AllowCmd(1, 10)
		policy.AllowCmd(3, 10)
		policy.AllowMethod("dns:web.svc", "/x.Y/Z")
		policy.AllowMethod("spiffe://td/web", "/a.B/D")
	}); n != 0 {
		t.Fatalf("%v allocs", n)
	}
}

func BenchmarkAllowCmd(b *testing.B) {
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		policy.AllowCmd(uint32(i&3), 10)
	}
}

func BenchmarkAllowMethod(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		policy.AllowMethod("spiffe://td/web", "/x.Y/Z")
	}
}

func TestFailuresShared(t *testing.T) {
	if Failures(nil) == nil {
		t.Fatal("nil registry")
	}
}
