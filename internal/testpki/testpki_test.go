package testpki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"net"
	"os"
	"testing"
	"time"
)

func TestMTLSHandshake(t *testing.T) {
	dir := t.TempDir()
	ca, files, err := WriteSet(dir, "server", "client")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := tls.LoadX509KeyPair(files["server"].CertFile, files["server"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	cliCert, err := tls.LoadX509KeyPair(files["client"].CertFile, files["client"].KeyFile)
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(files["server"].CAFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		t.Fatal("ca.pem not parsable")
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
		Certificates: []tls.Certificate{srvCert}, ClientCAs: pool, ClientAuth: tls.RequireAndVerifyClientCert,
	})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		done <- c.(*tls.Conn).Handshake()
	}()
	c, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(), &tls.Config{
		Certificates: []tls.Certificate{cliCert}, RootCAs: ca.Pool(), ServerName: "127.0.0.1",
	})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestRotateChangesSerialAndSANs(t *testing.T) {
	dir := t.TempDir()
	ca, err := NewCA("ca")
	if err != nil {
		t.Fatal(err)
	}
	l1, _, _, err := ca.IssueFiles(dir, "idc", "idc.meshgate.local", "spiffe://meshgate/idc", "10.0.0.1")
	if err != nil {
		t.Fatal(err)
	}
	l2, cf, _, err := ca.IssueFiles(dir, "idc")
	if err != nil {
		t.Fatal(err)
	}
	if l1.Serial() == l2.Serial() {
		t.Fatal("rotation kept the serial")
	}
	if len(l1.Cert.URIs) != 1 || l1.Cert.URIs[0].String() != "spiffe://meshgate/idc" {
		t.Fatalf("URI SANs %v", l1.Cert.URIs)
	}
	if len(l1.Cert.IPAddresses) != 3 {
		t.Fatalf("IP SANs %v", l1.Cert.IPAddresses)
	}
	if _, err := l1.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: "idc.meshgate.local"}); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(cf)
	if string(b) != string(l2.CertPEM) {
		t.Fatal("file not rotated")
	}
}

// TestRotateKeepsCopyAndClientConfig: Rotate rewrites the CA and the leaves
// in place under a new CA, a CopyTo taken before keeps the old material,
// and ClientConfig loads whichever files it is given.
func TestRotateKeepsCopyAndClientConfig(t *testing.T) {
	dir := t.TempDir()
	ca1, files, err := WriteSet(dir, "client")
	if err != nil {
		t.Fatal(err)
	}
	old, err := files["client"].CopyTo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca2, leaves, err := Rotate(dir, "ca-two", "client")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := leaves["client"].Cert.Verify(x509.VerifyOptions{Roots: ca2.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Fatalf("rotated leaf: %v", err)
	}
	for name, tc := range map[string]struct {
		f  TLSFiles
		ca *CA
	}{"rotated": {files["client"], ca2}, "copy": {old, ca1}} {
		cfg, err := tc.f.ClientConfig("localhost")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		leaf, err := x509.ParseCertificate(cfg.Certificates[0].Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: tc.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Fatalf("%s: certificate not from its CA: %v", name, err)
		}
		if _, err := tc.ca.Cert.Verify(x509.VerifyOptions{Roots: cfg.RootCAs}); err != nil {
			t.Fatalf("%s: roots do not hold its CA: %v", name, err)
		}
	}
	if _, err := (TLSFiles{CAFile: files["client"].CertFile + ".missing"}).ClientConfig(""); !errors.Is(err, ErrTestPKI) {
		t.Fatalf("missing ca_file: %v", err)
	}
}
