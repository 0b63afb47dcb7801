// Package testpki creates a throw-away certificate authority and leaf
// certificates (ECDSA P-256) as PEM files, for tests, benchmarks and local
// deployments that need real TLS / mTLS (MeshGate listeners, Envoy SDS).
//
// Every leaf carries 127.0.0.1, ::1 and localhost as SANs besides the names
// asked for, is valid for both server and client authentication, and gets
// a fresh random serial, so a rotated certificate is observably different.
package testpki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// ErrTestPKI wraps every failure of this package.
var ErrTestPKI = errors.New("testpki")

// Validity is how long issued certificates are valid (from one hour ago).
const Validity = 7 * 24 * time.Hour

// CA is an in-memory certificate authority.
type CA struct {
	// Validity of the certificates it issues; Validity (the package
	// constant) unless made by NewCAValidFor.
	Validity time.Duration

	Cert    *x509.Certificate
	Key     *ecdsa.PrivateKey
	certPEM []byte
	mu      sync.Mutex
}

// NewCA creates a self-signed CA with common name cn.
func NewCA(cn string) (*CA, error) { return NewCAValidFor(cn, Validity) }

// NewCAValidFor creates a self-signed CA with common name cn whose
// certificates, its own included, are valid for d.
func NewCAValidFor(cn string, d time.Duration) (*CA, error) {
	tmpl := template(cn, d)
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	tmpl.BasicConstraintsValid = true
	tmpl.IsCA = true
	tmpl.MaxPathLenZero = true
	cert, der, key, err := create(tmpl, nil, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: ca: %w", ErrTestPKI, err)
	}
	return &CA{Validity: d, Cert: cert, Key: key, certPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, nil
}

// template is what every certificate here starts from.
func template(cn string, validity time.Duration) *x509.Certificate {
	return &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"MeshGate test"}},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(validity),
	}
}

// create generates a key and signs tmpl with parent (self-signed when
// parent is nil).
func create(tmpl, parent *x509.Certificate, parentKey *ecdsa.PrivateKey) (*x509.Certificate, []byte, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("key: %w", err)
	}
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, &key.PublicKey, parentKey)
	if err != nil {
		return nil, nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, nil, err
	}
	return cert, der, key, nil
}

// CertPEM is the CA certificate in PEM.
func (ca *CA) CertPEM() []byte { return ca.certPEM }

// Pool is a cert pool holding only this CA.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Cert)
	return p
}

// WriteCA writes the CA certificate to dir/ca.pem and returns its path.
func (ca *CA) WriteCA(dir string) (string, error) {
	p := filepath.Join(dir, "ca.pem")
	if err := writeAtomic(p, ca.certPEM, 0o644); err != nil {
		return "", err
	}
	return p, nil
}

// Leaf is an issued certificate and its key in PEM.
type Leaf struct {
	Cert    *x509.Certificate
	CertPEM []byte
	KeyPEM  []byte
}

// Serial is the certificate serial in lower-case hex (as Envoy's
// /certs admin endpoint prints it).
func (l *Leaf) Serial() string { return fmt.Sprintf("%x", l.Cert.SerialNumber) }

// IssueLeaf issues a leaf certificate with common name cn. Each name is a
// DNS SAN, except names parsing as an IP (IP SAN) or containing "://"
// (URI SAN, e.g. spiffe://meshgate/idc).
func (ca *CA) IssueLeaf(cn string, names ...string) (*Leaf, error) {
	tmpl := template(cn, ca.Validity)
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment
	tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}
	tmpl.DNSNames = []string{"localhost"}
	tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}
	for _, n := range append([]string{cn}, names...) {
		switch {
		case n == "" || n == "localhost":
		case strings.Contains(n, "://"):
			u, err := url.Parse(n)
			if err != nil {
				return nil, fmt.Errorf("%w: uri SAN %q: %v", ErrTestPKI, n, err)
			}
			tmpl.URIs = append(tmpl.URIs, u)
		case net.ParseIP(n) != nil:
			tmpl.IPAddresses = append(tmpl.IPAddresses, net.ParseIP(n))
		default:
			tmpl.DNSNames = append(tmpl.DNSNames, n)
		}
	}
	ca.mu.Lock()
	cert, der, key, err := create(tmpl, ca.Cert, ca.Key)
	ca.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("%w: leaf %s: %w", ErrTestPKI, cn, err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("%w: leaf key: %v", ErrTestPKI, err)
	}
	return &Leaf{
		Cert:    cert,
		CertPEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		KeyPEM:  pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}),
	}, nil
}

// Issue issues a leaf (see IssueLeaf) and writes dir/name.pem and
// dir/name-key.pem atomically (rename), so watchers never see half a file.
// Issuing again with the same name rotates the files in place.
func (ca *CA) Issue(dir, name string, names ...string) (certFile, keyFile string, err error) {
	_, certFile, keyFile, err = ca.IssueFiles(dir, name, names...)
	return certFile, keyFile, err
}

// IssueFiles is Issue that also returns the Leaf (for its serial).
func (ca *CA) IssueFiles(dir, name string, names ...string) (leaf *Leaf, certFile, keyFile string, err error) {
	leaf, err = ca.IssueLeaf(name, names...)
	if err != nil {
		return nil, "", "", err
	}
	certFile = filepath.Join(dir, name+".pem")
	keyFile = filepath.Join(dir, name+"-key.pem")
	if err := writeAtomic(keyFile, leaf.KeyPEM, 0o600); err != nil {
		return nil, "", "", err
	}
	if err := writeAtomic(certFile, leaf.CertPEM, 0o644); err != nil {
		return nil, "", "", err
	}
	return leaf, certFile, keyFile, nil
}

// TLSFiles is the usual trio for a mTLS peer.
type TLSFiles struct {
	CertFile, KeyFile, CAFile string
}

// YAML is f as a MeshGate config tls block in YAML flow style:
// {cert_file: ..., key_file: ..., ca_file: ...}.
func (f TLSFiles) YAML() string {
	return fmt.Sprintf("{cert_file: %q, key_file: %q, ca_file: %q}", f.CertFile, f.KeyFile, f.CAFile)
}

// WriteSet creates a CA and one leaf per name in dir, returning the CA and
// the files of each leaf by name (CAFile set on each).
func WriteSet(dir string, names ...string) (*CA, map[string]TLSFiles, error) {
	ca, err := NewCA("meshgate-test-ca")
	if err != nil {
		return nil, nil, err
	}
	caFile, err := ca.WriteCA(dir)
	if err != nil {
		return nil, nil, err
	}
	out := make(map[string]TLSFiles, len(names))
	for _, n := range names {
		c, k, err := ca.Issue(dir, n)
		if err != nil {
			return nil, nil, err
		}
		out[n] = TLSFiles{CertFile: c, KeyFile: k, CAFile: caFile}
	}
	return ca, out, nil
}

// Rotate replaces the material in dir by a new CA's (common name cn):
// dir/ca.pem and, for each name, dir/name.pem and dir/name-key.pem are
// rewritten atomically, so peers reading the same files rotate. It returns
// the new CA and the new leaves by name.
func Rotate(dir, cn string, names ...string) (*CA, map[string]*Leaf, error) {
	ca, err := NewCA(cn)
	if err != nil {
		return nil, nil, err
	}
	if _, err := ca.WriteCA(dir); err != nil {
		return nil, nil, err
	}
	leaves := make(map[string]*Leaf, len(names))
	for _, n := range names {
		l, _, _, err := ca.IssueFiles(dir, n)
		if err != nil {
			return nil, nil, err
		}
		leaves[n] = l
	}
	return ca, leaves, nil
}

// CopyTo copies the three files to dir (same base names) and returns the
// copies: a peer that keeps today's material while the originals rotate.
func (f TLSFiles) CopyTo(dir string) (TLSFiles, error) {
	out := TLSFiles{}
	for _, c := range []struct {
		src string
		dst *string
	}{{f.CertFile, &out.CertFile}, {f.KeyFile, &out.KeyFile}, {f.CAFile, &out.CAFile}} {
		b, err := os.ReadFile(c.src)
		if err != nil {
			return TLSFiles{}, fmt.Errorf("%w: %w", ErrTestPKI, err)
		}
		*c.dst = filepath.Join(dir, filepath.Base(c.src))
		if err := writeAtomic(*c.dst, b, 0o600); err != nil {
			return TLSFiles{}, err
		}
	}
	return out, nil
}

// ClientConfig is a static client tls.Config from the files as they are
// now (a peer that never rotates): the leaf as client certificate (when
// CertFile is set) and CAFile as the only root.
func (f TLSFiles) ClientConfig(serverName string) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: serverName, RootCAs: x509.NewCertPool()}
	if f.CertFile != "" {
		cert, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTestPKI, err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	pemBytes, err := os.ReadFile(f.CAFile)
	if err != nil {
		return nil, fmt.Errorf("%w: %w", ErrTestPKI, err)
	}
	if !cfg.RootCAs.AppendCertsFromPEM(pemBytes) {
		return nil, fmt.Errorf("%w: no certificate in %s", ErrTestPKI, f.CAFile)
	}
	return cfg, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		panic(err) // crypto/rand never fails on Linux
	}
	return n.Add(n, big.NewInt(1))
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("%w: %v", ErrTestPKI, err)
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: %v", ErrTestPKI, err)
	}
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: %v", ErrTestPKI, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: %v", ErrTestPKI, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("%w: %v", ErrTestPKI, err)
	}
	return nil
}
