package testkit

import (
	"context"
	"math/big"
	"net"
	"testing"
	"time"

	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

// PKI writes a CA and one leaf per name into a fresh temporary directory
// (testpki.WriteSet) and returns the directory, the CA and the files.
func PKI(tb testing.TB, names ...string) (string, *testpki.CA, map[string]testpki.TLSFiles) {
	tb.Helper()
	dir := tb.TempDir()
	ca, files, err := testpki.WriteSet(dir, names...)
	if err != nil {
		tb.Fatal(err)
	}
	return dir, ca, files
}

// Rotate replaces the CA and the named leaves in dir by a new CA's
// (testpki.Rotate) and returns the new leaves.
func Rotate(tb testing.TB, dir, cn string, names ...string) map[string]*testpki.Leaf {
	tb.Helper()
	_, leaves, err := testpki.Rotate(dir, cn, names...)
	if err != nil {
		tb.Fatal(err)
	}
	return leaves
}

// KeepCopy copies f into a fresh temporary directory: material that stays
// as it is when f's files rotate.
func KeepCopy(tb testing.TB, f testpki.TLSFiles) testpki.TLSFiles {
	tb.Helper()
	c, err := f.CopyTo(tb.TempDir())
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// Config is f as a config.TLS block (ServerName set when serverName is
// not empty).
func Config(f testpki.TLSFiles, serverName string) *config.TLS {
	return &config.TLS{CertFile: f.CertFile, KeyFile: f.KeyFile, CAFile: f.CAFile, ServerName: serverName}
}

// TLSServer is a rotating tlsconf.Server on f's files (client certificates
// required when f.CAFile is set), closed at cleanup.
func TLSServer(tb testing.TB, f testpki.TLSFiles, refresh time.Duration) *tlsconf.Server {
	tb.Helper()
	s, err := tlsconf.NewServer(Config(f, ""), tlsconf.Options{Refresh: refresh})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

// TLSClient is a rotating tlsconf.Client on the given config, closed at
// cleanup.
func TLSClient(tb testing.TB, c *config.TLS, refresh time.Duration) *tlsconf.Client {
	tb.Helper()
	cl, err := tlsconf.NewClient(c, tlsconf.Options{Refresh: refresh})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cl.Close() })
	return cl
}

// WaitServes polls new handshakes (as client f, expecting "localhost")
// with addr until the server presents the certificate with serial, or
// fails the test when ctx ends.
func WaitServes(tb testing.TB, ctx context.Context, f testpki.TLSFiles, addr string, serial *big.Int, interval time.Duration) {
	tb.Helper()
	probe := TLSClient(tb, Config(f, "localhost"), time.Hour)
	Eventually(tb, ctx, interval, func() bool {
		var d net.Dialer
		raw, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			tb.Fatal(err)
		}
		c, err := probe.Handshake(ctx, raw, addr)
		if err != nil {
			return false
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(serial) == 0
	}, "backend never served the rotated certificate")
}
