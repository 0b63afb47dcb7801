package xds

import (
	"net"
	"sync/atomic"
	"time"

	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/xds/model"
)

// What one xDS client may hold. An Envoy opens one ADS stream (or one per
// resource type, six at most, without ADS); a proxyless gRPC process one
// per xDS server. The replicas of one workload share a node id and a
// certificate identity, so an identity's bound leaves room for a thousand
// of them. The bounds keep one client (one certificate, or one
// misbehaving process on a plaintext socket) from taking what the others
// need.
const (
	// MaxStreamsPerConn is the HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS of
	// the ADS listener: further streams of a connection wait for a slot.
	MaxStreamsPerConn = 16
	// MaxStreamsPerIdentity bounds the open streams of one client
	// certificate identity over all its connections (TLS only); more are
	// refused with ResourceExhausted, reason "too_many_streams".
	MaxStreamsPerIdentity = 1024
	// MaxStreams bounds the open streams of the whole control plane.
	MaxStreams = 8192
	// MaxRecvMsgSize bounds one DiscoveryRequest (resource_names lists
	// included: some 20,000 names); a larger one ends its stream with
	// ResourceExhausted. A state-of-the-world stream holds at most one
	// request's names per type.
	MaxRecvMsgSize = 1 << 20
	// MaxHeaderListSize bounds a stream's request headers (grpc-go's own
	// server default is 16 MiB).
	MaxHeaderListSize = 64 << 10
	// HandshakeTimeout bounds a connection's TLS handshake (grpc-go's
	// default is 120 s): a peer that connects and says nothing is dropped.
	HandshakeTimeout = 10 * time.Second
	// MaxConnectionIdle closes a connection that has had no stream for that
	// long (Envoy and grpc-go keep their ADS stream open and reconnect).
	MaxConnectionIdle = 5 * time.Minute
	// maxNoncesPerStream bounds the response nonces of one delta stream
	// awaiting an ACK (one per type is the norm); past it that stream's
	// are forgotten, never another stream's.
	maxNoncesPerStream = 64
	// maxNackDetail bounds what is kept, logged and shown by /readyz of a
	// client's error_detail.
	maxNackDetail = 1024
)

// RefusedTooManyStreams: a client (certificate identity) or the control
// plane as a whole has as many streams open as it may.
const RefusedTooManyStreams = "too_many_streams"

// serverOptions are the gRPC server options of the ADS listener.
func serverOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 5 * time.Second, PermitWithoutStream: true}),
		grpc.KeepaliveParams(keepalive.ServerParameters{Time: 30 * time.Second, Timeout: 5 * time.Second, MaxConnectionIdle: MaxConnectionIdle}),
		grpc.MaxConcurrentStreams(MaxStreamsPerConn),
		grpc.MaxRecvMsgSize(MaxRecvMsgSize),
		grpc.MaxHeaderListSize(MaxHeaderListSize),
		grpc.ConnectionTimeout(HandshakeTimeout),
	}
}

// knownType reports whether typeURL is one of the resource types the
// control plane serves. A request for another type closes its stream
// (InvalidArgument, counted unknown_type): its watch would never be
// answered, and a client choosing type URLs must not grow the server's
// maps, the nacks_total label set or the readiness report.
func knownType(typeURL string) bool {
	switch typeURL {
	case resource.ClusterType, resource.EndpointType, resource.ListenerType, resource.RouteType, resource.SecretType:
		return true
	}
	return false
}

// applyLimitsLocked takes the configured caps (zero: keep the default) when
// the listener starts (s.mu held); a change later restarts the control
// plane (TransportChanged).
func (s *Server) applyLimitsLocked(m *model.Server) {
	if m.MaxConnections > 0 {
		s.maxConns = m.MaxConnections
	}
	s.nackMu.Lock()
	if m.MaxStreams > 0 {
		s.maxStreams = m.MaxStreams
	}
	if m.MaxStreamsPerIdentity > 0 {
		s.maxPerIdentity = m.MaxStreamsPerIdentity
	}
	s.nackMu.Unlock()
}

// admitStream counts a new stream of pi against the caps; s.nackMu is
// held. It returns a ResourceExhausted status when a cap is reached.
func (s *Server) admitStreamLocked(pi peerIdentity) error {
	if len(s.peers) >= s.maxStreams {
		return status.Errorf(codes.ResourceExhausted, "%v: the control plane has %d streams open", ErrRefused, s.maxStreams)
	}
	if !pi.tls {
		return nil
	}
	n := 0
	for _, p := range s.peers {
		if p.tls && p.who == pi.who {
			n++
		}
	}
	if n >= s.maxPerIdentity {
		return status.Errorf(codes.ResourceExhausted, "%v: %s has %d streams open", ErrRefused, pi.who, s.maxPerIdentity)
	}
	return nil
}

// clipDetail bounds a client's error_detail message.
func clipDetail(d string) string {
	if len(d) <= maxNackDetail {
		return d
	}
	n := maxNackDetail
	for n > 0 && d[n]&0xC0 == 0x80 { // UTF-8 boundary
		n--
	}
	return d[:n] + "…(clipped)"
}

// MaxSubscribedBytes bounds the resource names one delta stream may be
// subscribed to (some 5,000 names; the bytes of the names, all types together; initial
// resource versions count too). A delta subscription accumulates over
// requests, so without a bound a client could grow it a request at a time;
// past it the stream ends with ResourceExhausted. (A state-of-the-world
// request replaces its type's names and is bounded by MaxRecvMsgSize.)
const MaxSubscribedBytes = 256 << 10

// RefusedTooManyNames: a delta stream subscribed to more than
// MaxSubscribedBytes of names.
const RefusedTooManyNames = "too_many_names"

// RefusedUnknownType: a request for a type URL the control plane does not
// serve (the watch it would open is never answered and keeps its names).
const RefusedUnknownType = "unknown_type"

// deltaNames is what one delta stream is subscribed to.
type deltaNames struct {
	names map[string]int // type URL + "\x00" + name → bytes counted
	bytes int
}

// trackDelta applies req's subscriptions to the stream's set and refuses
// one that would exceed MaxSubscribedBytes.
func (s *Server) trackDelta(id int64, req *discovery.DeltaDiscoveryRequest) error {
	typ := req.GetTypeUrl()
	s.nackMu.Lock()
	d := s.deltaSubs[id]
	if d == nil {
		d = &deltaNames{names: map[string]int{}}
		s.deltaSubs[id] = d
	}
	for _, n := range req.GetResourceNamesUnsubscribe() {
		k := typ + "\x00" + n
		d.bytes -= d.names[k]
		delete(d.names, k)
	}
	add := func(n string, size int) {
		k := typ + "\x00" + n
		if _, ok := d.names[k]; !ok {
			d.names[k] = size
			d.bytes += size
		}
	}
	for _, n := range req.GetResourceNamesSubscribe() {
		add(n, len(n))
	}
	for n, v := range req.GetInitialResourceVersions() {
		add(n, len(n)+len(v))
	}
	over := d.bytes > MaxSubscribedBytes
	s.nackMu.Unlock()
	if over {
		s.refuse(RefusedTooManyNames, "stream", id)
		return status.Errorf(codes.ResourceExhausted, "xds: delta stream subscribed to more than %d bytes of resource names", MaxSubscribedBytes)
	}
	return nil
}

// MaxConnections bounds the open connections of the ADS listener; the
// next is closed as soon as it is accepted (counted too_many_connections),
// so a connection flood costs the control plane, not the process's file
// descriptors. Envoys already connected keep their streams.
const MaxConnections = 4096

// RefusedTooManyConnections: the ADS listener had MaxConnections open.
const RefusedTooManyConnections = "too_many_connections"

// capListener closes connections accepted past max.
type capListener struct {
	net.Listener
	s    *Server
	max  int64
	open atomic.Int64
}

func (l *capListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) > l.max {
			l.open.Add(-1)
			l.s.refuse(RefusedTooManyConnections, "peer", c.RemoteAddr().String(), "max_connections", l.max)
			c.Close()
			continue
		}
		return &capConn{Conn: c, l: l}, nil
	}
}

type capConn struct {
	net.Conn
	l      *capListener
	closed atomic.Bool
}

func (c *capConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}
