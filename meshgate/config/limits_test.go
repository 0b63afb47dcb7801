package config

import (
	"strings"
	"testing"
	"time"
)

func TestLimitsDefaultsAndOverrides(t *testing.T) {
	y := good + `
defaults:
  limits:
    max_connections: 500
    recv_timeout: 2s
`
	y = strings.Replace(y, "    address: 127.0.0.1:7001\n", "    address: 127.0.0.1:7001\n    limits: {max_concurrent_streams: 10, max_connections: 7}\n", 1)
	c, err := Parse([]byte(y), "")
	if err != nil {
		t.Fatal(err)
	}
	if d := c.Defaults.Limits; d.MaxConnections != 500 || d.RecvTimeout != 2*time.Second || d.MaxConcurrentStreams != DefaultMaxConcurrentStreams || d.FDReserve != DefaultFDReserve {
		t.Fatalf("defaults.limits: %+v", d)
	}
	in, out := c.Listeners[0].Limits, c.Listeners[1].Limits
	if in.MaxConnections != 500 || in.RecvTimeout != 2*time.Second || in.MaxHeaderListSize != DefaultMaxHeaderListSize {
		t.Fatalf("listeners[0].limits from defaults: %+v", in)
	}
	if out.MaxConnections != 7 || out.MaxConcurrentStreams != 10 || out.MaxInFlightPerConnection != 10 {
		t.Fatalf("listeners[1].limits override (in-flight follows streams): %+v", out)
	}
	var nilLimits *Limits
	want := DefaultLimits()
	want.MaxInFlightPerConnection = int(want.MaxConcurrentStreams)
	if e := nilLimits.Effective(); e != want {
		t.Fatalf("Effective(nil) = %+v", e)
	}
}
