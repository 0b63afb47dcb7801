package runtime

import (
	"context"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/meshgate/meshgate/meshgate/config"
)

// grpcBridge is the gRPC→private side mounted on a grpc listener.
type grpcBridge interface {
	ServerOptions() []grpc.ServerOption
}

// privatePools owns the private-protocol upstream pools and the
// gRPC→private bridges. Placeholder until meshgate/outbound lands: grpc
// listeners answer UNIMPLEMENTED.
type privatePools struct{}

func (p *privatePools) init()                                                  {}
func (p *privatePools) stage(r *Runtime, cfg *config.Config, st *staged) error { return nil }
func (p *privatePools) commit(r *Runtime, st *staged)                          {}
func (p *privatePools) abort(st *staged)                                       {}
func (p *privatePools) close()                                                 {}
func (p *privatePools) updateBridge(r *Runtime, b grpcBridge, lc config.Listener, st *staged) {
}

func (p *privatePools) bridge(r *Runtime, lc config.Listener, st *staged) (grpcBridge, error) {
	return unimplementedBridge{}, nil
}

type unimplementedBridge struct{}

func (unimplementedBridge) ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{grpc.UnknownServiceHandler(func(any, grpc.ServerStream) error {
		return status.Error(codes.Unimplemented, "meshgate: gRPC→private bridge not built in")
	})}
}

var _ = context.Background
