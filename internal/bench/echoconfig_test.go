package bench

import (
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
)

// TestEchoConfigsParse checks every scenario's MeshGate config against this
// tree's config package: the listener kind, what its one route matches and
// sends, and the upstream's protocol and address.
func TestEchoConfigsParse(t *testing.T) {
	for _, c := range []struct {
		name, cfg, kind, proto string
		cmd                    uint32
		method                 string
	}{
		{"S3", meshGatePrivToGRPC("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), config.KindPrivate, config.ProtoGRPC, EchoCmd, EchoMethod},
		{"S3g", meshGatePrivToGRPCGo("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), config.KindPrivate, config.ProtoGRPC, EchoCmd, EchoMethod},
		{"S6", meshGateGRPCToPriv("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), config.KindGRPC, config.ProtoPrivate, EchoCmd, EchoMethod},
		{"S6g", meshGateGRPCToPrivGRPCGo("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), config.KindGRPC, config.ProtoPrivate, EchoCmd, EchoMethod},
		{"MPP", meshGatePrivToPriv("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), config.KindPrivate, config.ProtoPrivate, EchoCmd, ""},
		{"MGG", meshGateGRPCToGRPC("127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"), config.KindGRPC, config.ProtoGRPC, 0, EchoMethod},
	} {
		cfg, err := config.Parse([]byte(c.cfg), t.TempDir())
		if err != nil {
			t.Fatalf("%s: %v\n%s", c.name, err, c.cfg)
		}
		l, u := cfg.Listeners[0], cfg.Upstreams[0]
		r := l.Routes[0]
		if l.Kind != c.kind || l.Address != "127.0.0.1:2" || cfg.Admin.Address != "127.0.0.1:1" || len(l.Routes) != 1 {
			t.Errorf("%s: listener %+v admin %s", c.name, l, cfg.Admin.Address)
		}
		if r.Cmd != c.cmd || r.Method != c.method || r.Upstream != u.Name || r.Shadow != nil {
			t.Errorf("%s: route %+v", c.name, r)
		}
		if len(cfg.Upstreams) != 1 || u.Protocol != c.proto || len(u.Endpoints) != 1 || u.Endpoints[0] != "127.0.0.1:3" {
			t.Errorf("%s: upstreams %+v", c.name, cfg.Upstreams)
		}
		if want := map[bool]string{true: config.GRPCTransportGRPCGo}[c.name == "S3g"]; u.GRPCTransport != want {
			t.Errorf("%s: grpc_transport %q, want %q", c.name, u.GRPCTransport, want)
		}
		if want := map[bool]string{true: config.GRPCTransportGRPCGo}[c.name == "S6g"]; l.GRPCTransport != want {
			t.Errorf("%s: listener grpc_transport %q, want %q", c.name, l.GRPCTransport, want)
		}
	}
}
