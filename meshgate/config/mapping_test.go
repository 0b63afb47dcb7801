package config

import (
	"strings"
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// TestOnewayRoutes: routes[].oneway is accepted on a grpc listener (a
// private one's is a row of TestErrorsNameTheField).
func TestOnewayRoutes(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(good, "cmd: 1, upstream: p}", "cmd: 1, upstream: p, oneway: true}", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Listeners[1].Routes[0].Oneway {
		t.Fatal("oneway not parsed")
	}
}

// TestCodecRegisteredFromGo: a codec registered with codec.Register is
// usable by name on listeners and upstreams. Before: "unknown codec".
func TestCodecRegisteredFromGo(t *testing.T) {
	codec.Register("config-test-codec", func(max int) (codec.Codec, error) { return mgp.New(max), nil })
	y := strings.Replace(good, "kind: private", "kind: private\n    codec: config-test-codec", 1)
	y = strings.Replace(y, "lb: consistent_hash}", "lb: consistent_hash, codec: config-test-codec}", 1)
	c, err := Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	if c.Listeners[0].Codec != "config-test-codec" || c.Upstreams[1].Codec != "config-test-codec" {
		t.Fatalf("codecs %q %q", c.Listeners[0].Codec, c.Upstreams[1].Codec)
	}
	// A declarative codec may not take a registered name.
	y = good + "codecs:\n  - {name: config-test-codec, file: x.yaml}\n"
	if _, err := Parse([]byte(y), ""); err == nil || !strings.Contains(err.Error(), "codecs[0].name") {
		t.Fatalf("declarative codec shadowing a registered one: %v", err)
	}
}
