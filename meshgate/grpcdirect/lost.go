package grpcdirect

import (
	"errors"
	"io"
	"os"
	"syscall"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Why a direct connection was lost (Config.OnLost; package grpcpool counts
// them as meshgate_grpc_upstream_connections_lost_total{upstream,reason},
// the gRPC twin of meshgate_private_upstream_connections_lost_total).
const (
	LostProtocol     = "protocol"      // the server broke HTTP/2 (a connection error: bad frame, HPACK, SETTINGS, PUSH_PROMISE, header block limits)
	LostGoAway       = "goaway"        // the server sent GOAWAY; the connection closed once its streams ended
	LostWriteTimeout = "write_timeout" // the server took no bytes for the write timeout
	LostLiveness     = "liveness"      // a keepalive PING got no ack in time
	LostClosed       = "closed"        // the server closed (or reset) the connection
	LostError        = "error"         // any other socket error
)

// Sentinel causes of close, for LostReason.
var (
	errGoAway   = errors.New("GOAWAY received")
	errDrained  = errors.New("drained after GOAWAY")
	errLiveness = errors.New("keepalive ping not acknowledged")
)

// protoError marks a connection error of the server's making (LostProtocol);
// its message is the cause's.
type protoError struct{ err error }

func (e *protoError) Error() string { return e.err.Error() }
func (e *protoError) Unwrap() error { return e.err }

func protocolError(err error) error { return &protoError{err} }

// LostReason is the reason (Lost*) a connection closed with err was lost.
func LostReason(err error) string {
	var pe *protoError
	var ce http2.ConnectionError
	var de hpack.DecodingError
	var ie hpack.InvalidIndexError
	switch {
	case errors.Is(err, errGoAway), errors.Is(err, errDrained):
		return LostGoAway
	case errors.Is(err, errLiveness):
		return LostLiveness
	case errors.As(err, &pe), errors.As(err, &ce), errors.As(err, &de), errors.As(err, &ie),
		errors.Is(err, http2.ErrFrameTooLarge), errors.Is(err, hpack.ErrStringLength):
		return LostProtocol
	case errors.Is(err, os.ErrDeadlineExceeded):
		return LostWriteTimeout
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF),
		errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return LostClosed
	}
	return LostError
}
