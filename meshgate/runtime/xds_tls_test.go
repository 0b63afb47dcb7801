package runtime

import (
	"crypto/tls"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testpki"
)

// TestXDSReloadToTLSRestartsPlane: a reload that adds xds.tls restarts the
// control plane on a mutual-TLS listener (Update alone would keep serving
// plaintext): a client without a certificate is refused, one with a
// certificate of the CA completes the handshake.
func TestXDSReloadToTLSRestartsPlane(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := testpki.WriteSet(dir, "xds", "client")
	if err != nil {
		t.Fatal(err)
	}
	grpcEP := backend(t, "A")
	plain := yamlConfig(grpcEP, "") + "\nxds:\n  address: 127.0.0.1:0\n  insecure: true\n"
	withTLS := yamlConfig(grpcEP, "") + fmt.Sprintf("\nxds:\n  address: 127.0.0.1:0\n  tls: {cert_file: %q, key_file: %q, ca_file: %q}\n",
		files["xds"].CertFile, files["xds"].KeyFile, files["xds"].CAFile)
	rt := start(t, mustParse(t, plain))
	before := rt.XDS()
	if err := rt.Reload(mustParse(t, withTLS)); err != nil {
		t.Fatal(err)
	}
	xs := rt.XDS()
	if xs == nil || xs == before {
		t.Fatal("control plane not restarted for the new TLS settings")
	}
	handshake := func(cert *tls.Certificate) error {
		c, err := net.DialTimeout("tcp", xs.Addr().String(), 2*time.Second)
		if err != nil {
			return err
		}
		defer c.Close()
		tc := &tls.Config{RootCAs: ca.Pool(), ServerName: "127.0.0.1", NextProtos: []string{"h2"}}
		if cert != nil {
			tc.Certificates = []tls.Certificate{*cert}
		}
		conn := tls.Client(c, tc)
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		if err := conn.Handshake(); err != nil {
			return err
		}
		// TLS 1.3: the server's verdict on the client certificate arrives
		// after the client's handshake; a read surfaces it.
		conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		_, err = conn.Read(make([]byte, 1))
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return nil
		}
		return err
	}
	if err := handshake(nil); err == nil {
		t.Fatal("handshake without a client certificate succeeded")
	}
	cert, err := tls.LoadX509KeyPair(files["client"].CertFile, files["client"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	if err := handshake(&cert); err != nil {
		t.Fatalf("handshake with a client certificate: %v", err)
	}
}
