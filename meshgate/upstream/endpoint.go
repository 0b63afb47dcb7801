package upstream

import "context"

type endpointSinkKey struct{}

// WithEndpointSink returns a context under which Do and Send store the
// address of the endpoint they send to in *sink (the last one tried), for
// access logs and spans.
func WithEndpointSink(ctx context.Context, sink *string) context.Context {
	return context.WithValue(ctx, endpointSinkKey{}, sink)
}

// reportEndpoint stores addr in ctx's endpoint sink, if any.
func reportEndpoint(ctx context.Context, addr string) {
	if p, ok := ctx.Value(endpointSinkKey{}).(*string); ok {
		*p = addr
	}
}
