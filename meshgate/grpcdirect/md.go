package grpcdirect

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"
)

// Metadata without allocations per call.
//
// grpc-go's API passes request metadata in the context
// (metadata.NewOutgoingContext: two allocations) and reads it back with a
// copy (metadata.FromOutgoingContext: three), and hands response metadata
// out as new maps (grpc.Header, grpc.Trailer). A caller that makes many
// calls with storage of its own (the private → gRPC bridge keeps one per
// pooled request) passes two call options instead, which grpc-go's
// ClientConn ignores (grpc.EmptyCallOption):
//
//   - OutgoingMD: the request metadata, read from the caller's map as it
//     is encoded into HPACK (the context's outgoing metadata is then not
//     read at all);
//   - MDStore: the grpc.Header and grpc.Trailer targets are refilled in
//     place (emptied first), their value slices reused from the store.
//
// The response's header blocks are decoded into the reader's own reused
// storage and copied into the call's (pooled with the call); only the
// delivery into the caller's targets differs.

// OutgoingMD is a call option of the direct transport: *MD is the call's
// request metadata, encoded in place of the outgoing metadata of the
// call's context (which is then not read). *MD is read while the request
// is written, until the call completes; the caller must not change it
// meanwhile. grpc-go's ClientConn ignores it: a caller whose calls may go
// to either transport also puts the same map in the context.
type OutgoingMD struct {
	grpc.EmptyCallOption
	MD *metadata.MD
}

// MDStore is a call option of the direct transport that makes the
// grpc.Header and grpc.Trailer targets of the call be refilled in place
// (emptied, then filled, reusing their maps and the value slices the store
// keeps) instead of replaced with new maps. One store per caller: the
// caller owns the targets and the store, uses one call at a time, and
// empties the targets with Clear before they are used for something else
// (a stale map is otherwise kept by a call that delivers no metadata).
// grpc-go's ClientConn ignores it.
type MDStore struct {
	grpc.EmptyCallOption
	free [][]string
}

// Clear empties md, keeping its value slices for reuse.
func (s *MDStore) Clear(md metadata.MD) {
	for k, v := range md {
		if cap(v) > 0 && cap(v) <= maxKeptValues && len(s.free) < maxKeptKeys {
			clear(v)
			s.free = append(s.free, v[:0])
		}
		delete(md, k)
	}
}

// What reused metadata storage keeps: a response with many keys or
// values once (a server may send up to maxHeaderList bytes of them)
// does not pin its storage.
const (
	maxKeptValues = 8  // values of one key
	maxKeptKeys   = 32 // keys of one map; value slices of a store
)

// add appends value v to key k of md, with a kept slice for a new key.
func (s *MDStore) add(md metadata.MD, k, v string) {
	vs, ok := md[k]
	if !ok && len(s.free) > 0 {
		vs = s.free[len(s.free)-1]
		s.free[len(s.free)-1] = nil
		s.free = s.free[:len(s.free)-1]
	}
	md[k] = append(vs, v)
}

// fill makes *dst hold src's keys and values (a nil src: empty), reusing
// *dst's map and the store's slices.
func (s *MDStore) fill(dst *metadata.MD, src metadata.MD) {
	if *dst == nil || len(*dst) > maxKeptKeys {
		if len(src) == 0 {
			*dst = nil
			return
		}
		*dst = make(metadata.MD, len(src))
	}
	s.Clear(*dst)
	for k, vs := range src {
		for _, v := range vs {
			s.add(*dst, k, v)
		}
	}
}
