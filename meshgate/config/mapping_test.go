package config

import (
	"errors"
	"strings"
	"testing"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
)

// TestOnewayRoutes: routes[].oneway is accepted on a grpc listener and
// rejected, naming the field, on a private one.
func TestOnewayRoutes(t *testing.T) {
	c, err := Parse([]byte(strings.Replace(good, "cmd: 1, upstream: p}", "cmd: 1, upstream: p, oneway: true}", 1)), "")
	if err != nil {
		t.Fatal(err)
	}
	if !c.Listeners[1].Routes[0].Oneway {
		t.Fatal("oneway not parsed")
	}
	_, err = Parse([]byte(strings.Replace(good, "upstream: g}", "upstream: g, oneway: true}", 1)), "")
	if !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), "listeners[0].routes[0].oneway") {
		t.Fatalf("oneway on a private listener: %v", err)
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
