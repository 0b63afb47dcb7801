package tlsconf_test

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/tlsconf"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

const refresh = 20 * time.Millisecond

// echoServer accepts TLS connections on 127.0.0.1 and echoes lines.
func echoServer(t *testing.T, cfg *tls.Config) string {
	t.Helper()
	ln := testkit.Listen(t, "127.0.0.1:0")
	testkit.ServeConns(t, tls.NewListener(ln, cfg), func(c net.Conn) { _, _ = io.Copy(c, c) })
	return ln.Addr().String()
}

// roundTrip writes a line and reads it back.
func roundTrip(c net.Conn, r *bufio.Reader, msg string) error {
	_ = c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, msg+"\n"); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if strings.TrimSpace(got) != msg {
		return errors.New("echo mismatch: " + got)
	}
	return nil
}

func dial(ctx context.Context, c *tlsconf.Client, addr string) (*tls.Conn, error) {
	var d net.Dialer
	raw, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return c.Handshake(ctx, raw, addr)
}

// TestRotation: mTLS between a Server and a Client; then the CA, the
// server's cert+key and the client's cert+key are all replaced by ones
// from a new CA. The established connection keeps working; new
// connections present the new certificates and are verified against the
// new CA; a peer still holding the old CA's material is refused.
func TestRotation(t *testing.T) {
	dir := t.TempDir()
	ca1, err := testpki.NewCA("ca-one")
	if err != nil {
		t.Fatal(err)
	}
	caFile, err := ca1.WriteCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	srvCert, srvKey, err := ca1.Issue(dir, "server")
	if err != nil {
		t.Fatal(err)
	}
	cliCert, cliKey, err := ca1.Issue(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	// A client that keeps CA one's material for good (its own files).
	old := testkit.KeepCopy(t, testpki.TLSFiles{CertFile: cliCert, KeyFile: cliKey, CAFile: caFile})

	srv := testkit.TLSServer(t, testpki.TLSFiles{CertFile: srvCert, KeyFile: srvKey, CAFile: caFile}, refresh)
	addr := echoServer(t, srv.Config())
	cli := testkit.TLSClient(t, &config.TLS{CertFile: cliCert, KeyFile: cliKey, CAFile: caFile, ServerName: "localhost"}, refresh)
	oldCli := testkit.TLSClient(t, testkit.Config(old, ""), time.Hour)

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	est, err := dial(ctx, cli, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer est.Close()
	estR := bufio.NewReader(est)
	if err := roundTrip(est, estR, "before"); err != nil {
		t.Fatal(err)
	}
	firstSerial := est.ConnectionState().PeerCertificates[0].SerialNumber

	// Rotate everything to CA two.
	newSrv := testkit.Rotate(t, dir, "ca-two", "server", "client")["server"]

	// New connections pick up the new material (polled: the files are
	// re-read every refresh interval).
	var fresh *tls.Conn
	for fresh == nil {
		c, err := dial(ctx, cli, addr)
		if err == nil {
			// TLS 1.3: the server's verdict on the client certificate
			// arrives with the first read, so confirm with a round trip.
			if c.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(newSrv.Cert.SerialNumber) == 0 &&
				roundTrip(c, bufio.NewReader(c), "fresh") == nil {
				fresh = c
				break
			}
			_ = c.Close()
		}
		select {
		case <-ctx.Done():
			t.Fatalf("new material never used (last err %v)", err)
		case <-time.After(refresh):
		}
	}
	defer fresh.Close()
	if got := fresh.ConnectionState().VerifiedChains[0]; got[len(got)-1].Subject.CommonName != "ca-two" {
		t.Fatalf("new connection verified by %s", got[len(got)-1].Subject.CommonName)
	}
	// The established connection is untouched.
	if err := roundTrip(est, estR, "after"); err != nil {
		t.Fatalf("established connection broken by rotation: %v", err)
	}
	if est.ConnectionState().PeerCertificates[0].SerialNumber.Cmp(firstSerial) != 0 {
		t.Fatal("established connection changed certificates")
	}
	// Old-CA material is refused both ways: the old client does not trust
	// the new server certificate, and the server no longer accepts a client
	// certificate from CA one.
	if c, err := dial(ctx, oldCli, addr); err == nil {
		err = roundTrip(c, bufio.NewReader(c), "old")
		_ = c.Close()
		if err == nil {
			t.Fatal("client trusting only CA one accepted the rotated server")
		}
	}
	trustNew := testkit.TLSClient(t, &config.TLS{CertFile: old.CertFile, KeyFile: old.KeyFile, CAFile: caFile, ServerName: "localhost"}, time.Hour)
	c, err := dial(ctx, trustNew, addr)
	if err == nil {
		// TLS 1.3: the server's verdict on the client certificate arrives
		// with the first read.
		err = roundTrip(c, bufio.NewReader(c), "old-client-cert")
		_ = c.Close()
	}
	if err == nil {
		t.Fatal("server accepted a client certificate from the retired CA")
	}
}

// TestServerWithoutClientCA: TLS without client certificates; a client
// with no identity connects.
func TestServerWithoutClientCA(t *testing.T) {
	_, _, files := testkit.PKI(t, "server")
	f := files["server"]
	srv := testkit.TLSServer(t, testpki.TLSFiles{CertFile: f.CertFile, KeyFile: f.KeyFile}, time.Hour)
	addr := echoServer(t, srv.Config())
	cli := testkit.TLSClient(t, &config.TLS{CAFile: f.CAFile}, time.Hour)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, err := dial(ctx, cli, addr) // server name from the address: 127.0.0.1 is in the SANs
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, bufio.NewReader(c), "hi"); err != nil {
		t.Fatal(err)
	}
	// A wrong expected name fails the handshake.
	bad := testkit.TLSClient(t, &config.TLS{CAFile: f.CAFile, ServerName: "other.test"}, time.Hour)
	if c, err := dial(ctx, bad, addr); err == nil {
		c.Close()
		t.Fatal("wrong server name accepted")
	}
}

// TestBadFiles: unreadable or malformed files are errors at construction,
// naming which file.
func TestBadFiles(t *testing.T) {
	dir, _, files := testkit.PKI(t, "server")
	f := files["server"]
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not pem"), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, tc := range map[string]struct {
		t      config.TLS
		server bool
		want   string
	}{
		"missing key":    {config.TLS{CertFile: f.CertFile, KeyFile: filepath.Join(dir, "nope.pem")}, true, "key_file"},
		"garbage CA":     {config.TLS{CertFile: f.CertFile, KeyFile: f.KeyFile, CAFile: garbage}, true, "ca_file"},
		"missing CA":     {config.TLS{CAFile: filepath.Join(dir, "nope.pem")}, false, "ca_file"},
		"client no CA":   {config.TLS{CertFile: f.CertFile, KeyFile: f.KeyFile}, false, "ca_file"},
		"server no cert": {config.TLS{CAFile: f.CAFile}, true, "cert_file"},
	} {
		var err error
		if tc.server {
			var s *tlsconf.Server
			if s, err = tlsconf.NewServer(&tc.t, tlsconf.Options{}); err == nil {
				s.Close()
			}
		} else {
			var c *tlsconf.Client
			if c, err = tlsconf.NewClient(&tc.t, tlsconf.Options{}); err == nil {
				c.Close()
			}
		}
		if err == nil || !errors.Is(err, tlsconf.ErrTLS) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an ErrTLS naming %s", name, err, tc.want)
		}
	}
}

// BenchmarkMTLSHandshake: one full mTLS handshake over loopback with the
// current key material looked up from the providers on both sides.
func BenchmarkMTLSHandshake(b *testing.B) {
	_, _, files := testkit.PKI(b, "server", "client")
	srv := testkit.TLSServer(b, files["server"], 0)
	cli := testkit.TLSClient(b, testkit.Config(files["client"], ""), 0)
	ln := testkit.Listen(b, "127.0.0.1:0")
	testkit.ServeConns(b, ln, func(c net.Conn) {
		tc := tls.Server(c, srv.Config())
		_ = tc.Handshake()
		_, _ = io.Copy(io.Discard, tc)
		_ = tc.Close()
	})
	addr := ln.Addr().String()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		c, err := dial(ctx, cli, addr)
		if err != nil {
			b.Fatal(err)
		}
		_ = c.Close()
	}
}
