package harness

import (
	"fmt"
	"net"
	"strconv"
	"testing"
	"time"

	adminv3 "github.com/envoyproxy/go-control-plane/envoy/admin/v3"
	"google.golang.org/protobuf/encoding/protojson"
)

// EnvoyAdmin is what EnvoyListener needs of a running Envoy
// (*envoyproc.Envoy).
type EnvoyAdmin interface {
	AdminGet(path string) ([]byte, error)
}

// EnvoyListener waits until Envoy's listener name is bound and returns its
// host:port, read from the admin's /listeners?format=json: a bootstrap may
// then put the listener on port 0.
func EnvoyListener(t testing.TB, env EnvoyAdmin, name string) string {
	t.Helper()
	var addr string
	Eventually(t, 20*time.Second, "Envoy listener "+name+" bound", func() error {
		b, err := env.AdminGet("/listeners?format=json")
		if err != nil {
			return err
		}
		var ls adminv3.Listeners
		if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(b, &ls); err != nil {
			return fmt.Errorf("/listeners: %w", err)
		}
		for _, l := range ls.GetListenerStatuses() {
			sa := l.GetLocalAddress().GetSocketAddress()
			if l.GetName() == name && sa.GetPortValue() != 0 {
				addr = net.JoinHostPort(sa.GetAddress(), strconv.Itoa(int(sa.GetPortValue())))
				return nil
			}
		}
		return fmt.Errorf("not listed yet: %s", b)
	})
	return addr
}
