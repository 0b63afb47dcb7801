package grpcpool

import (
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func TestKeyPairReloads(t *testing.T) {
	dir := t.TempDir()
	ca, caKey := newCA(t)
	certFile, keyFile := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	write := func(name string, mtime time.Time) {
		der, key := leaf(t, ca, caKey, name)
		kb, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		writePEM(t, certFile, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", kb)
		_ = os.Chtimes(certFile, mtime, mtime)
		_ = os.Chtimes(keyFile, mtime, mtime)
	}
	cn := func(kp *KeyPair) string {
		c, err := x509.ParseCertificate(kp.Get().Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		return c.Subject.CommonName
	}
	write("first", time.Now().Add(-time.Hour))
	kp, err := NewKeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	if cn(kp) != "first" {
		t.Fatal("initial pair")
	}
	write("second", time.Now())
	kp.mu.Lock()
	kp.checked = time.Time{} // skip the once-per-second throttle
	kp.mu.Unlock()
	if got := cn(kp); got != "second" {
		t.Fatalf("after rotation: %s", got)
	}
	// A broken rotation keeps the last good pair.
	if err := os.WriteFile(keyFile, []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	_ = os.Chtimes(keyFile, time.Now().Add(time.Hour), time.Now().Add(time.Hour))
	kp.mu.Lock()
	kp.checked = time.Time{}
	kp.mu.Unlock()
	if got := cn(kp); got != "second" {
		t.Fatalf("after bad rotation: %s", got)
	}
	if _, err := NewKeyPair(certFile, filepath.Join(dir, "missing")); err == nil {
		t.Fatal("missing key accepted")
	}
}
