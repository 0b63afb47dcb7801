package upstream_test

import (
	"errors"
	"testing"

	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/upstream"
)

// The pool takes its config as resolved by config (defaults applied once,
// there): an unresolved upstream is an error, not silently re-defaulted.
func TestPrivatePoolNeedsResolvedConfig(t *testing.T) {
	u := config.Upstream{Name: "p", Protocol: config.ProtoPrivate, Endpoints: []string{"127.0.0.1:1"}}
	if _, err := upstream.NewPrivatePool(u, mgp.New(0), nil, nil); !errors.Is(err, upstream.ErrConfig) {
		t.Fatalf("unresolved config: %v, want ErrConfig", err)
	}
	p, err := upstream.NewPrivatePool(u.WithDefaults(), mgp.New(0), nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	_ = p.Close()
	if got := len(p.Endpoints()); got != 1 {
		t.Fatalf("endpoints: %d", got)
	}
}
