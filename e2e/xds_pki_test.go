package e2e

import (
	"crypto/tls"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
)

// xdsPKI is the test PKI of a mutual-TLS control plane: a CA (dir/ca.pem),
// the control plane's certificate (dir/xds.pem, with 127.0.0.1 and
// localhost SANs) and client certificates issued per node.
type xdsPKI struct {
	dir string
	ca  *testpki.CA
}

// newXDSPKI writes the PKI into dir; ca nil creates a new CA.
func newXDSPKI(t testing.TB, dir string, ca *testpki.CA) *xdsPKI {
	t.Helper()
	if ca == nil {
		var err error
		if ca, err = testpki.NewCA("meshgate-xds-e2e-ca"); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ca.WriteCA(dir); err != nil {
		t.Fatal(err)
	}
	if _, _, err := ca.Issue(dir, "xds"); err != nil {
		t.Fatal(err)
	}
	return &xdsPKI{dir: dir, ca: ca}
}

// serverYAML is the xds.tls line of a config (absolute paths).
func (p *xdsPKI) serverYAML() string {
	return fmt.Sprintf("tls: {cert_file: %q, key_file: %q, ca_file: %q}",
		filepath.Join(p.dir, "xds.pem"), filepath.Join(p.dir, "xds-key.pem"), filepath.Join(p.dir, "ca.pem"))
}

// client issues dir/file.pem (CN file, plus sans: "spiffe://…" URI SANs,
// other names DNS SANs) and returns the client TLS files.
func (p *xdsPKI) client(t testing.TB, file string, sans ...string) *config.TLS {
	t.Helper()
	c, k, err := p.ca.Issue(p.dir, file, sans...)
	if err != nil {
		t.Fatal(err)
	}
	return &config.TLS{CertFile: c, KeyFile: k, CAFile: filepath.Join(p.dir, "ca.pem")}
}

// clientYAML renders t as an xds_tls flow mapping.
func clientYAML(t *config.TLS) string {
	return fmt.Sprintf("{cert_file: %q, key_file: %q, ca_file: %q}", t.CertFile, t.KeyFile, t.CAFile)
}

// creds are grpc-go transport credentials presenting f (nil: no client
// certificate) and trusting the PKI's CA.
func (p *xdsPKI) creds(t testing.TB, f *config.TLS) credentials.TransportCredentials {
	t.Helper()
	tc := &tls.Config{RootCAs: p.ca.Pool(), ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}
	if f != nil {
		c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			t.Fatal(err)
		}
		tc.Certificates = []tls.Certificate{c}
	}
	return credentials.NewTLS(tc)
}

type slogLogger = slog.Logger

// newSlog logs to the test log (visible with -v or on failure) at Info;
// XDS_E2E_DEBUG=1 lowers it to Debug.
func newSlog(t *testing.T, component string) *slog.Logger {
	lvl := slog.LevelInfo
	if os.Getenv("XDS_E2E_DEBUG") == "1" {
		lvl = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: lvl})).With("component", component)
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(string(p[:len(p)-1]))
	return len(p), nil
}
