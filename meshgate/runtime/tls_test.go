package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/mgp"
	"github.com/meshgate/meshgate/internal/testpki"
)

// TestPrivateListenerMTLS: a private listener terminating mTLS.
func TestPrivateListenerMTLS(t *testing.T) {
	dir := t.TempDir()
	_, files, err := testpki.WriteSet(dir, "meshgate", "client")
	if err != nil {
		t.Fatal(err)
	}
	s, c := files["meshgate"], files["client"]
	y := fmt.Sprintf(`
admin: {address: "127.0.0.1:0"}
listeners:
  - name: mtls
    kind: private
    address: 127.0.0.1:0
    tls: {cert_file: %q, key_file: %q, ca_file: %q}
    routes: [{cmd: 1, method: /demo.Echo/Echo, upstream: demo}]
upstreams:
  - {name: demo, protocol: grpc, endpoints: [%q]}
`, s.CertFile, s.KeyFile, s.CAFile, backend(t, "A"))
	rt := start(t, mustParse(t, y))
	pem, err := os.ReadFile(c.CAFile)
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AppendCertsFromPEM(pem)
	cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	addr := rt.Addr("mtls").String()
	roundTrip := func(certs []tls.Certificate) error {
		conn, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: roots, ServerName: "meshgate", Certificates: certs})
		if err != nil {
			return err
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
		cd := mgp.New(0)
		b, _ := cd.Append(nil, &codec.Frame{Cmd: 1, Seq: 3, Body: []byte("secure")})
		if _, err := conn.Write(b); err != nil {
			return err
		}
		var f codec.Frame
		if err := codec.NewReader(conn, cd, 256).ReadFrame(&f); err != nil {
			return err
		}
		if f.Seq != 3 || string(f.Body) != "secure" {
			return fmt.Errorf("reply %+v", f)
		}
		return nil
	}
	if err := roundTrip([]tls.Certificate{cert}); err != nil {
		t.Fatalf("mTLS round trip: %v", err)
	}
	if err := roundTrip(nil); err == nil {
		t.Fatal("client without certificate was served")
	}
}
