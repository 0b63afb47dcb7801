package config

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestViewInlinesEmbedded: the /config view flattens the embedded structs
// a route and a listener are made of (RouteResilience, RouteRewrite,
// RouteObservability, ListenerObservability), as their YAML does, instead
// of nesting them under Go type names.
func TestViewInlinesEmbedded(t *testing.T) {
	y := edit(t, good, "{cmd: 1, method: /demo.Echo/Echo, upstream: g}",
		"{cmd: 1, method: /demo.Echo/Echo, upstream: g, idempotent: true, max_attempts: 3}")
	b, err := json.Marshal(mustParse(t, y, "").View())
	if err != nil {
		t.Fatal(err)
	}
	for _, goName := range []string{"RouteResilience", "RouteRewrite", "RouteObservability", "ListenerObservability"} {
		if strings.Contains(string(b), `"`+goName+`"`) {
			t.Errorf("view has Go type name %q as a key:\n%s", goName, b)
		}
	}
	var v struct {
		Listeners []struct {
			Routes []map[string]any `json:"routes"`
		} `json:"listeners"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	r := v.Listeners[0].Routes[0]
	if r["idempotent"] != true || r["max_attempts"] != float64(3) || r["upstream"] != "g" {
		t.Fatalf("route view lacks its inlined fields: %v", r)
	}
}
