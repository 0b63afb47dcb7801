package grpcpool

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/meshgate/meshgate/meshgate/config"
)

// KeyPair serves a certificate and key from files, re-reading them when
// their modification time changes (checked at most once per second), so
// rotated certificates apply to new handshakes without a restart. A
// rotation that fails to load keeps the previous pair.
type KeyPair struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	mtime   [2]time.Time
	checked time.Time
}

// NewKeyPair loads the pair once (an error here is a config error).
func NewKeyPair(certFile, keyFile string) (*KeyPair, error) {
	k := &KeyPair{certFile: certFile, keyFile: keyFile}
	if err := k.load(); err != nil {
		return nil, err
	}
	return k, nil
}

func (k *KeyPair) load() error {
	var mt [2]time.Time
	for i, f := range []string{k.certFile, k.keyFile} {
		st, err := os.Stat(f)
		if err != nil {
			return fmt.Errorf("%w: %v", ErrTLS, err)
		}
		mt[i] = st.ModTime()
	}
	c, err := tls.LoadX509KeyPair(k.certFile, k.keyFile)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTLS, err)
	}
	k.cert, k.mtime = &c, mt
	return nil
}

// Get returns the current pair, reloading it if the files changed.
func (k *KeyPair) Get() *tls.Certificate {
	k.mu.Lock()
	defer k.mu.Unlock()
	if now := time.Now(); now.Sub(k.checked) >= time.Second {
		k.checked = now
		for i, f := range []string{k.certFile, k.keyFile} {
			if st, err := os.Stat(f); err == nil && !st.ModTime().Equal(k.mtime[i]) {
				_ = k.load() // keep the old pair on failure
				break
			}
		}
	}
	return k.cert
}

// ServerTLS builds a listener tls.Config from t, serving a reloading key
// pair; with CAFile, client certificates are required and verified (mTLS).
func ServerTLS(t *config.TLS) (*tls.Config, error) {
	kp, err := NewKeyPair(t.CertFile, t.KeyFile)
	if err != nil {
		return nil, err
	}
	c := &tls.Config{MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return kp.Get(), nil }}
	if t.CAFile != "" {
		if c.ClientCAs, err = loadPool(t.CAFile); err != nil {
			return nil, err
		}
		c.ClientAuth = tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// ClientTLS builds a client tls.Config from t (CA required by config
// validation, client certificate optional for mTLS, reloaded on change).
func ClientTLS(t *config.TLS) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12, ServerName: t.ServerName}
	if t.CAFile != "" {
		var err error
		if c.RootCAs, err = loadPool(t.CAFile); err != nil {
			return nil, err
		}
	}
	if t.CertFile != "" {
		kp, err := NewKeyPair(t.CertFile, t.KeyFile)
		if err != nil {
			return nil, err
		}
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) { return kp.Get(), nil }
	}
	return c, nil
}

func loadPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrTLS, err)
	}
	p := x509.NewCertPool()
	if !p.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%w: no certificate in %s", ErrTLS, file)
	}
	return p, nil
}
