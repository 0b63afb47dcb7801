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

func TestLimitsErrorsNameTheField(t *testing.T) {
	cases := map[string]struct{ add, field string }{
		"negative max_connections": {"defaults:\n  limits: {max_connections: -1}\n", "defaults.limits.max_connections"},
		"small window":             {"defaults:\n  limits: {stream_window: 100}\n", "defaults.limits.stream_window"},
		"negative timeout":         {"defaults:\n  limits: {recv_timeout: -1s}\n", "defaults.limits.recv_timeout"},
		"huge message":             {"defaults:\n  limits: {max_send_message_size: 100000000}\n", "defaults.limits.max_send_message_size"},
		"tiny header list":         {"defaults:\n  limits: {max_header_list_size: 10}\n", "defaults.limits.max_header_list_size"},
	}
	for name, tc := range cases {
		_, err := Parse([]byte(good+tc.add), "")
		if err == nil || !strings.Contains(err.Error(), tc.field) {
			t.Errorf("%s: error %v, want one naming %s", name, err, tc.field)
		}
	}
	y := strings.Replace(good, "    address: 127.0.0.1:7000\n", "    address: 127.0.0.1:7000\n    limits: {fd_reserve: 10, max_in_flight_per_connection: -2}\n", 1)
	_, err := Parse([]byte(y), "")
	for _, f := range []string{"listeners[0].limits.fd_reserve", "listeners[0].limits.max_in_flight_per_connection"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("error %v, want one naming %s", err, f)
		}
	}
}
