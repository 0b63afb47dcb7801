package model

import (
	"reflect"
	"testing"
	"time"
)

func TestParseAddress(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Address
		str  string
	}{
		{"127.0.0.1:10000", Address{Host: "127.0.0.1", Port: 10000}, "127.0.0.1:10000"},
		{"localhost:80", Address{Host: "127.0.0.1", Port: 80}, "127.0.0.1:80"},
		{"[::1]:0", Address{Host: "::1"}, "[::1]:0"},
		{"unix:/run/x.sock", Address{Unix: "/run/x.sock"}, "unix:/run/x.sock"},
	} {
		got, err := ParseAddress(c.in)
		if err != nil || got != c.want || got.String() != c.str {
			t.Errorf("ParseAddress(%q) = %+v %q, %v; want %+v %q", c.in, got, got.String(), err, c.want, c.str)
		}
	}
	for _, bad := range []string{"", "127.0.0.1", "h:port", "h:70000", "unix:"} {
		if _, err := ParseAddress(bad); err == nil {
			t.Errorf("ParseAddress(%q) accepted", bad)
		}
	}
}

func fullModel() *XDS {
	tls := TLS{Certificate: &CertificateSecret{Name: "c", CertFile: "/c", KeyFile: "/k"}, Validation: &ValidationSecret{Name: "v", CAFile: "/ca"}, MatchDNSSAN: "x"}
	return &XDS{
		Server: Server{Address: Address{Host: "127.0.0.1", Port: 1}, TLS: &ServerTLS{CertFile: "/s"}, SocketMode: 0o600, CertPoll: time.Second},
		Nodes: []Node{{
			ID: "n", Identities: []string{"dns:n"}, XDSClientTLS: &ClientTLS{CertFile: "/e"},
			Listeners: []Listener{{Name: "l", Protocol: GRPC, Wasm: &Wasm{Name: "w"}, Routes: []Route{{PathPrefix: "/", Cluster: "c"}}, TLS: &DownstreamTLS{TLS: tls}}},
			Clusters:  []Cluster{{Name: "c", Protocol: GRPC, Endpoints: []Address{{Host: "127.0.0.1", Port: 2}}, LB: RoundRobin, TLS: &UpstreamTLS{TLS: tls, SNI: "x"}}},
		}},
		Proxyless: Proxyless{
			Nodes:    []ProxylessNode{{ID: "p", Identities: []string{"dns:p"}}},
			Services: []Service{{Name: "s", Cluster: "grpc/s", Endpoints: []Address{{Host: "127.0.0.1", Port: 3}}}},
		},
	}
}

// TestCloneIsDeep: changing anything reachable from a clone leaves the
// original as it was.
func TestCloneIsDeep(t *testing.T) {
	orig := fullModel()
	c := orig.Clone()
	if !reflect.DeepEqual(orig, c) {
		t.Fatal("clone differs")
	}
	c.Server.TLS.CertFile = "changed"
	n := &c.Nodes[0]
	n.Identities[0] = "changed"
	n.XDSClientTLS.CertFile = "changed"
	l := &n.Listeners[0]
	l.Wasm.Name = "changed"
	l.Routes[0].Cluster = "changed"
	l.TLS.Certificate.Name = "changed"
	l.TLS.Validation.CAFile = "changed"
	cl := &n.Clusters[0]
	cl.Endpoints[0].Port = 99
	cl.TLS.Certificate.CertFile = "changed"
	cl.TLS.Validation.Name = "changed"
	c.Proxyless.Nodes[0].Identities[0] = "changed"
	c.Proxyless.Services[0].Endpoints[0].Port = 99
	if !reflect.DeepEqual(orig, fullModel()) {
		t.Fatalf("changing the clone changed the original:\n%+v", orig)
	}
	if (*XDS)(nil).Clone() != nil {
		t.Fatal("nil clone")
	}
}
