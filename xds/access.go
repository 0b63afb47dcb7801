package xds

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/tls/certprovider/pemfile"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/xds/model"
)

// Access control. Every ADS stream is bound to the identities of its
// peer's verified client certificate (URI SANs verbatim, DNS SANs as
// "dns:NAME"), recorded when the stream opens. Every request's node id
// must be a declared node (xds.envoy or xds.proxyless_nodes) and, on a TLS
// stream, one of the stream's identities must be listed for it; otherwise
// the stream is closed with PermissionDenied before the cache sees the
// request. Without TLS (a unix socket, or xds.insecure on loopback) the
// transport is trusted and only the node id is checked.

// ErrRefused: an xDS stream was refused (unknown node, wrong identity).
var ErrRefused = errors.New("xds: stream refused")

// Refusal reasons, the reason label of meshgate_xds_refused_total.
const (
	RefusedHandshake = "handshake"         // TLS handshake failed (no or bad client certificate)
	RefusedNoNode    = "no_node"           // request without a node id
	RefusedUnknown   = "unknown_node"      // node id not declared
	RefusedIdentity  = "identity_mismatch" // certificate not allowed to claim the node id
)

var refusedReasons = []string{RefusedHandshake, RefusedNoNode, RefusedUnknown, RefusedIdentity, RefusedTooManyStreams, RefusedTooManyNames, RefusedUnknownType, RefusedTooManyConnections}

// accessTable is the node/identity table of one config.
type accessTable struct {
	envoy     map[string]bool     // Envoy node ids (own snapshot)
	proxyless map[string]bool     // proxyless node ids (shared ProxylessNode snapshot)
	byID      map[string][]string // identity → node ids it may claim
}

func newAccessTable(m *model.XDS) *accessTable {
	t := &accessTable{envoy: map[string]bool{}, proxyless: map[string]bool{}, byID: map[string][]string{}}
	if m == nil {
		return t
	}
	for _, n := range m.Nodes {
		t.envoy[n.ID] = true
		for _, id := range n.Identities {
			t.byID[id] = append(t.byID[id], n.ID)
		}
	}
	for _, n := range m.Proxyless.Nodes {
		t.proxyless[n.ID] = true
		for _, id := range n.Identities {
			t.byID[id] = append(t.byID[id], n.ID)
		}
	}
	return t
}

// peerIdentity is what a stream's transport proved about its client.
type peerIdentity struct {
	tls bool     // a verified client certificate was presented
	ids []string // its identities
	who string   // for logs: first identity or remote address
}

// IdentitiesOf lists the identities of a certificate: URI SANs verbatim,
// DNS SANs as "dns:NAME" in lower case.
func IdentitiesOf(c *x509.Certificate) []string {
	out := make([]string, 0, len(c.URIs)+len(c.DNSNames))
	for _, u := range c.URIs {
		out = append(out, u.String())
	}
	for _, d := range c.DNSNames {
		out = append(out, "dns:"+strings.ToLower(d)) // DNS names are case-insensitive
	}
	return out
}

func identityOf(ctx context.Context) peerIdentity {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return peerIdentity{who: "unknown"}
	}
	pi := peerIdentity{who: p.Addr.String()}
	if ti, ok := p.AuthInfo.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 && len(ti.State.PeerCertificates) > 0 {
		pi.tls = true
		pi.ids = IdentitiesOf(ti.State.PeerCertificates[0])
		if len(pi.ids) > 0 {
			pi.who = pi.ids[0]
		}
	}
	return pi
}

// knows reports whether any of ids may claim a node.
func (t *accessTable) knows(ids []string) bool {
	for _, id := range ids {
		if len(t.byID[id]) > 0 {
			return true
		}
	}
	return false
}

// check decides whether a stream with identity pi may claim node.
func (t *accessTable) check(pi peerIdentity, node string, requireTLS bool) (reason string) {
	switch {
	case node == "":
		return RefusedNoNode
	case !t.envoy[node] && !t.proxyless[node]:
		return RefusedUnknown
	case !pi.tls && requireTLS:
		return RefusedIdentity
	case !pi.tls:
		return ""
	}
	for _, id := range pi.ids {
		for _, n := range t.byID[id] {
			if n == node {
				return ""
			}
		}
	}
	return RefusedIdentity
}

// streamOpened records the identity of a new stream.
func (s *Server) streamOpened(ctx context.Context, k streamKey) error {
	s.connected.Inc()
	pi := identityOf(ctx)
	if pi.tls && !s.access.Load().knows(pi.ids) {
		// A certificate of the CA listed for no node can claim nothing:
		// it holds no stream waiting for a first request.
		s.refuse(RefusedIdentity, "peer", pi.who, "identities", pi.ids)
		return status.Errorf(codes.PermissionDenied, "%v: no node is declared for identities %q", ErrRefused, pi.ids)
	}
	s.nackMu.Lock()
	err := s.admitStreamLocked(pi)
	if err == nil {
		s.peers[k] = pi
	}
	s.nackMu.Unlock()
	if err != nil {
		s.refuse(RefusedTooManyStreams, "peer", pi.who)
	}
	return err // an error closes the stream (the closed callback still runs)
}

// authorize refuses a request whose node id the stream may not claim; the
// returned status error closes the stream.
func (s *Server) authorize(k streamKey, node string) error {
	s.nackMu.Lock()
	pi := s.peers[k]
	s.nackMu.Unlock()
	reason := s.access.Load().check(pi, node, s.requireTLS.Load())
	if reason == "" {
		return nil
	}
	s.refuse(reason, "node", node, "peer", pi.who, "identities", pi.ids)
	return status.Errorf(codes.PermissionDenied, "%v: node %q: %s", ErrRefused, node, reason)
}

// refuseType closes a stream that asked for a type URL not served.
func (s *Server) refuseType(node, typeURL string) error {
	if len(typeURL) > 128 {
		typeURL = typeURL[:128] + "…"
	}
	s.refuse(RefusedUnknownType, "node", node, "type_url", typeURL)
	return status.Errorf(codes.InvalidArgument, "%v: type_url %q is not served", ErrRefused, typeURL)
}

// refuse counts a refusal and logs it at most once per logEvery per reason.
func (s *Server) refuse(reason string, attrs ...any) {
	s.refused.WithLabelValues(reason).Inc()
	last := s.refusedLog[reason]
	now := time.Now().UnixNano()
	if prev := last.Load(); now-prev < int64(refusedLogEvery) || !last.CompareAndSwap(prev, now) {
		return
	}
	s.log.Warn("xds stream refused (logged at most every 10s per reason)", append([]any{"reason", reason}, attrs...)...)
}

const refusedLogEvery = 10 * time.Second

func newRefusedCounter() (*prometheus.CounterVec, map[string]*atomic.Int64) {
	c := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "meshgate_xds_refused_total", Help: "xDS connections and streams refused (handshake, no_node, unknown_node, identity_mismatch, too_many_streams, too_many_names, unknown_type, too_many_connections).",
	}, []string{"reason"})
	logs := map[string]*atomic.Int64{}
	for _, r := range refusedReasons {
		c.WithLabelValues(r)
		logs[r] = new(atomic.Int64)
	}
	return c, logs
}

// serverCreds builds the control plane's mutual-TLS transport
// credentials: certificates and CA come from grpc-go's pemfile provider
// (re-read every refresh), client certificates are required and verified.
func serverCreds(t *model.ServerTLS, refresh time.Duration, s *Server) (credentials.TransportCredentials, func(), error) {
	certFile, keyFile, caFile := t.CertFile, t.KeyFile, t.CAFile
	// Fail now on unusable files (the provider would only log and wait).
	if _, err := tls.LoadX509KeyPair(certFile, keyFile); err != nil {
		return nil, nil, fmt.Errorf("%w: xds.tls: %w", ErrMissingFile, err)
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: xds.tls.ca_file: %w", ErrMissingFile, err)
	}
	if !x509.NewCertPool().AppendCertsFromPEM(ca) {
		return nil, nil, fmt.Errorf("%w: xds.tls.ca_file %s: no PEM certificate", ErrMissingFile, caFile)
	}
	if refresh <= 0 {
		refresh = defaultCertPoll
	}
	prov, err := pemfile.NewProvider(pemfile.Options{CertFile: certFile, KeyFile: keyFile, RootFile: caFile, RefreshDuration: refresh})
	if err != nil {
		return nil, nil, fmt.Errorf("xds.tls: %w", err)
	}
	tc := &tls.Config{
		MinVersion: tls.VersionTLS12,
		ClientAuth: tls.RequireAndVerifyClientCert,
		GetConfigForClient: func(hi *tls.ClientHelloInfo) (*tls.Config, error) {
			ctx, cancel := context.WithTimeout(hi.Context(), 5*time.Second)
			defer cancel()
			km, err := prov.KeyMaterial(ctx)
			if err != nil {
				return nil, fmt.Errorf("xds.tls: key material: %w", err)
			}
			return &tls.Config{
				MinVersion:   tls.VersionTLS12,
				ClientAuth:   tls.RequireAndVerifyClientCert,
				Certificates: km.Certs,
				ClientCAs:    km.Roots,
				NextProtos:   []string{"h2"},
			}, nil
		},
	}
	return countingCreds{credentials.NewTLS(tc), s}, prov.Close, nil
}

// countingCreds counts failed TLS handshakes as refusals.
type countingCreds struct {
	credentials.TransportCredentials
	s *Server
}

func (c countingCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	out, ai, err := c.TransportCredentials.ServerHandshake(conn)
	if err != nil {
		c.s.refuse(RefusedHandshake, "peer", conn.RemoteAddr().String(), "err", err)
	}
	return out, ai, err
}

func (c countingCreds) Clone() credentials.TransportCredentials {
	return countingCreds{c.TransportCredentials.Clone(), c.s}
}

// secureLocked prepares the transport of addr: mutual TLS when the model
// has server TLS, plaintext otherwise (the config allows that only on a
// unix socket or, with xds.insecure, a loopback address). s.mu is held.
func (s *Server) secureLocked(addr string) error {
	if s.model == nil || s.model.Server.TLS == nil {
		if path, ok := strings.CutPrefix(addr, "unix:"); ok && path != "" {
			s.requireTLS.Store(false)
			return nil
		}
		host, _, err := net.SplitHostPort(addr)
		if s.model == nil || !s.model.Server.Insecure || err != nil || !loopback(host) {
			return fmt.Errorf("xds: listen %s: xds.tls is required on TCP (plaintext only with xds.insecure on a loopback address)", addr)
		}
		s.requireTLS.Store(false)
		return nil
	}
	creds, closeFn, err := serverCreds(s.model.Server.TLS, s.model.Server.CertPoll, s)
	if err != nil {
		return err
	}
	s.creds, s.closeCreds = creds, closeFn
	s.requireTLS.Store(true)
	return nil
}

func (s *Server) socketModeLocked() os.FileMode {
	if s.model == nil {
		return 0o600
	}
	return os.FileMode(s.model.Server.SocketMode)
}

// listenUnix listens on path with mode. A stale socket of a previous run
// is removed first. The socket is bound in a private directory (0700:
// nobody else can reach it there), given its mode, then renamed into
// place, so it never exists at path with the wider mode the umask would
// give it between bind and chmod (a peer connected then would keep a
// trusted plaintext connection).
func listenUnix(path string, mode os.FileMode) (net.Listener, error) {
	if st, err := os.Lstat(path); err == nil && st.Mode()&os.ModeSocket != 0 {
		os.Remove(path)
	}
	dir, err := os.MkdirTemp(filepath.Dir(path), ".xds-sock-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	tmp := filepath.Join(dir, "s")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return nil, err
	}
	ln.SetUnlinkOnClose(false) // it is unlinked by its final name below
	if err := os.Chmod(tmp, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("chmod %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		ln.Close()
		return nil, err
	}
	return &unixListener{UnixListener: ln, addr: &net.UnixAddr{Name: path, Net: "unix"}}, nil
}

// unixListener is a socket renamed after bind: it reports and unlinks
// its final path.
type unixListener struct {
	*net.UnixListener
	addr *net.UnixAddr
	once sync.Once
}

func (l *unixListener) Addr() net.Addr { return l.addr }

func (l *unixListener) Close() error {
	err := l.UnixListener.Close()
	l.once.Do(func() { os.Remove(l.addr.Name) })
	return err
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// TransportChanged reports whether m would listen differently (address,
// TLS files, insecure, socket mode) from what this server listens with.
// Update does not change a bound listener or its credentials, so the
// runtime restarts the control plane then.
func (s *Server) TransportChanged(m *model.XDS) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil || s.listened == nil || m == nil {
		return false
	}
	a, b := s.listened, &m.Server
	tlsKey := func(t *model.ServerTLS) string {
		if t == nil {
			return ""
		}
		return t.CertFile + "\x00" + t.KeyFile + "\x00" + t.CAFile
	}
	return (s.opts.Address == "" && a.Address != b.Address) || a.Insecure != b.Insecure ||
		a.SocketMode != b.SocketMode || tlsKey(a.TLS) != tlsKey(b.TLS) ||
		a.MaxConnections != b.MaxConnections || a.MaxStreams != b.MaxStreams || a.MaxStreamsPerIdentity != b.MaxStreamsPerIdentity
}
