// Package tlsconf builds the TLS of every hop MeshGate owns — private and
// gRPC listeners (server side, optionally verifying client certificates)
// and private and gRPC upstreams (client side, optionally presenting a
// certificate) — from config.TLS blocks.
//
// Key material comes from grpc-go's certprovider/pemfile: the certificate,
// key and CA files are re-read every refresh interval and a changed set
// (that parses) replaces the old one for new handshakes; connections
// already established keep the material they were set up with. A rotation
// that does not parse (e.g. a certificate written before its key) keeps
// the last good material until the next refresh.
//
// Server side: GetCertificate serves the current identity; with a CA, a
// client certificate is required and verified against the current roots
// in VerifyConnection (which also runs on resumed sessions). Client side:
// every handshake gets a fresh tls.Config holding the current roots and
// identity, so the standard verification (chain and server name) applies.
package tlsconf

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"

	"github.com/meshgate/meshgate/meshgate/config"
)

// ErrTLS wraps every error building or using TLS material.
var ErrTLS = errors.New("tlsconf")

// Options tune a Server or Client.
type Options struct {
	// Refresh is how often the files are re-read; default
	// config.DefaultTLSRefresh.
	Refresh time.Duration
}

// material is the identity (cert+key) and roots (CA) providers of one
// config.TLS block; either may be nil.
type material struct {
	identity certprovider.Provider
	roots    certprovider.Provider
}

// newMaterial checks the files once (so a bad file is a clear error at
// configuration time, not a handshake that never completes) and starts
// pemfile providers for them.
func newMaterial(t *config.TLS, o Options) (*material, error) {
	if t == nil {
		return nil, fmt.Errorf("%w: no tls config", ErrTLS)
	}
	if o.Refresh <= 0 {
		o.Refresh = config.DefaultTLSRefresh
	}
	m := &material{}
	if t.CertFile != "" || t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("%w: cert_file/key_file: %w", ErrTLS, err)
		}
		p, err := pemfile.NewProvider(pemfile.Options{CertFile: t.CertFile, KeyFile: t.KeyFile, RefreshDuration: o.Refresh})
		if err != nil {
			return nil, fmt.Errorf("%w: %w", ErrTLS, err)
		}
		m.identity = p
	}
	if t.CAFile != "" {
		if err := checkCA(t.CAFile); err != nil {
			m.Close()
			return nil, err
		}
		p, err := pemfile.NewProvider(pemfile.Options{RootFile: t.CAFile, RefreshDuration: o.Refresh})
		if err != nil {
			m.Close()
			return nil, fmt.Errorf("%w: %w", ErrTLS, err)
		}
		m.roots = p
	}
	// The providers load in the background; wait for the first load so
	// the first handshake does not.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range []certprovider.Provider{m.identity, m.roots} {
		if p == nil {
			continue
		}
		if _, err := p.KeyMaterial(ctx); err != nil {
			m.Close()
			return nil, fmt.Errorf("%w: loading key material: %w", ErrTLS, err)
		}
	}
	return m, nil
}

func checkCA(file string) error {
	pem, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("%w: ca_file: %w", ErrTLS, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(pem) {
		return fmt.Errorf("%w: ca_file: no PEM certificate in %s", ErrTLS, file)
	}
	return nil
}

// cert returns the current identity certificate.
func (m *material) cert(ctx context.Context) (*tls.Certificate, error) {
	km, err := m.identity.KeyMaterial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: identity: %w", ErrTLS, err)
	}
	if len(km.Certs) == 0 {
		return nil, fmt.Errorf("%w: no identity certificate", ErrTLS)
	}
	return &km.Certs[0], nil
}

// pool returns the current trusted roots.
func (m *material) pool(ctx context.Context) (*x509.CertPool, error) {
	km, err := m.roots.KeyMaterial(ctx)
	if err != nil {
		return nil, fmt.Errorf("%w: roots: %w", ErrTLS, err)
	}
	if km.Roots == nil {
		return nil, fmt.Errorf("%w: no trusted roots", ErrTLS)
	}
	return km.Roots, nil
}

// Close stops the providers' refresh goroutines.
func (m *material) Close() {
	if m.identity != nil {
		m.identity.Close()
	}
	if m.roots != nil {
		m.roots.Close()
	}
}

// Server is the TLS of one listener.
type Server struct {
	m   *material
	cfg *tls.Config
}

// NewServer starts watching t's files (cert_file and key_file required;
// with ca_file, clients must present a certificate it verifies).
func NewServer(t *config.TLS, o Options) (*Server, error) {
	if t == nil || t.CertFile == "" {
		return nil, fmt.Errorf("%w: a listener needs cert_file and key_file", ErrTLS)
	}
	m, err := newMaterial(t, o)
	if err != nil {
		return nil, err
	}
	s := &Server{m: m}
	s.cfg = &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			return m.cert(h.Context())
		},
	}
	if m.roots != nil {
		// Chain verification happens in VerifyConnection against the
		// current roots (ClientCAs would freeze them).
		s.cfg.ClientAuth = tls.RequireAnyClientCert
		s.cfg.VerifyConnection = s.verifyClient
	}
	return s, nil
}

func (s *Server) verifyClient(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return fmt.Errorf("%w: client certificate required", ErrTLS)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	roots, err := s.m.pool(ctx)
	if err != nil {
		return err
	}
	inter := x509.NewCertPool()
	for _, c := range cs.PeerCertificates[1:] {
		inter.AddCert(c)
	}
	if _, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		Roots: roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}); err != nil {
		return fmt.Errorf("%w: client certificate: %w", ErrTLS, err)
	}
	return nil
}

// Config is the listener tls.Config (for tls.NewListener, or
// credentials.NewTLS on a grpc.Server, which clones it).
func (s *Server) Config() *tls.Config { return s.cfg }

// Credentials are gRPC server transport credentials using Config.
func (s *Server) Credentials() credentials.TransportCredentials { return credentials.NewTLS(s.cfg) }

// Close stops re-reading the files; established connections are not
// affected.
func (s *Server) Close() { s.m.Close() }

// Client is the TLS of one upstream.
type Client struct {
	m          *material
	serverName string
}

// NewClient starts watching t's files (ca_file required; cert_file and
// key_file, when set, are presented to servers that ask: mTLS).
func NewClient(t *config.TLS, o Options) (*Client, error) {
	if t == nil || t.CAFile == "" {
		return nil, fmt.Errorf("%w: an upstream needs ca_file to verify the server", ErrTLS)
	}
	m, err := newMaterial(t, o)
	if err != nil {
		return nil, err
	}
	return &Client{m: m, serverName: t.ServerName}, nil
}

// Config returns a tls.Config for one handshake with the current roots
// and identity. The expected server name is the configured server_name,
// else the host of addr (host:port), else left for the caller to set.
func (c *Client) Config(ctx context.Context, addr string) (*tls.Config, error) {
	roots, err := c.m.pool(ctx)
	if err != nil {
		return nil, err
	}
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: roots, ServerName: c.serverName}
	if cfg.ServerName == "" && addr != "" {
		if host, _, err := net.SplitHostPort(addr); err == nil {
			cfg.ServerName = host
		} else {
			cfg.ServerName = addr
		}
	}
	if c.m.identity != nil {
		m := c.m
		cfg.GetClientCertificate = func(ri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return m.cert(ri.Context())
		}
	}
	return cfg, nil
}

// Handshake runs a client TLS handshake on raw toward addr within ctx.
// On error raw is closed.
func (c *Client) Handshake(ctx context.Context, raw net.Conn, addr string) (*tls.Conn, error) {
	cfg, err := c.Config(ctx, addr)
	if err != nil {
		_ = raw.Close()
		return nil, err
	}
	tc := tls.Client(raw, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		_ = raw.Close()
		return nil, fmt.Errorf("%w: handshake with %s: %w", ErrTLS, addr, err)
	}
	return tc, nil
}

// Credentials are gRPC client transport credentials that build a fresh
// tls.Config (current roots and identity) for every handshake; without
// server_name, gRPC verifies the authority it dials.
func (c *Client) Credentials() credentials.TransportCredentials { return clientCreds{c} }

// Close stops re-reading the files; established connections are not
// affected.
func (c *Client) Close() { c.m.Close() }

type clientCreds struct{ c *Client }

func (cc clientCreds) ClientHandshake(ctx context.Context, authority string, raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cfg, err := cc.c.Config(ctx, "")
	if err != nil {
		return nil, nil, err
	}
	return credentials.NewTLS(cfg).ClientHandshake(ctx, authority, raw)
}

func (cc clientCreds) ServerHandshake(net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, fmt.Errorf("%w: client credentials used on a server", ErrTLS)
}

func (cc clientCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: "tls", SecurityVersion: "1.2", ServerName: cc.c.serverName}
}

func (cc clientCreds) Clone() credentials.TransportCredentials { return cc }

// OverrideServerName is deprecated in gRPC and not supported.
func (cc clientCreds) OverrideServerName(string) error {
	return fmt.Errorf("%w: OverrideServerName is not supported; set server_name", ErrTLS)
}
