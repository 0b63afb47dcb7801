// Package transcode converts message bodies between the JSON a private
// protocol carries and the protobuf a gRPC service speaks, for routes that
// declare `body: {format: json, request_type, response_type}`. Types come
// from the listener's descriptor sets (package descset) and messages are
// built with dynamicpb; the JSON mapping is protojson's (proto3 JSON:
// lowerCamelCase or original field names accepted, int64 as strings or
// numbers, unknown fields rejected).
//
// A request body that does not parse is the caller's error: it wraps
// ErrBody and names the message type and, where protojson reports it, the
// field and position (the bridge answers result 2 / INVALID_ARGUMENT). A
// reply that cannot be converted is the service's (INTERNAL).
package transcode

import (
	"errors"
	"fmt"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
)

// Errors.
var (
	ErrBody   = errors.New("transcode: invalid body")
	ErrConfig = errors.New("transcode: invalid body config")
)

// Codec converts one route's request and response bodies.
type Codec struct {
	req, resp protoreflect.MessageDescriptor
}

// New resolves b's types in set. It returns nil, nil for format proto
// (bytes pass as they are).
func New(set *descset.Set, b *config.Body) (*Codec, error) {
	if b == nil || b.Format == "" || b.Format == config.BodyProto {
		return nil, nil
	}
	req, err := set.Message(b.RequestType)
	if err != nil {
		return nil, fmt.Errorf("%w: request_type: %w", ErrConfig, err)
	}
	resp, err := set.Message(b.ResponseType)
	if err != nil {
		return nil, fmt.Errorf("%w: response_type: %w", ErrConfig, err)
	}
	return &Codec{req: req, resp: resp}, nil
}

var (
	unmarshalJSON = protojson.UnmarshalOptions{}
	marshalJSON   = protojson.MarshalOptions{}
)

// RequestToProto converts a JSON request body to protobuf (private →
// gRPC). An empty body is the empty message.
func (c *Codec) RequestToProto(js []byte) ([]byte, error) {
	return jsonToProto(c.req, js, "request")
}

// ResponseToJSON converts a protobuf reply to JSON (private → gRPC reply).
func (c *Codec) ResponseToJSON(pb []byte) ([]byte, error) {
	return protoToJSON(c.resp, pb, "response")
}

// RequestToJSON converts a protobuf request to JSON (gRPC → private).
func (c *Codec) RequestToJSON(pb []byte) ([]byte, error) {
	return protoToJSON(c.req, pb, "request")
}

// ResponseToProto converts a JSON reply to protobuf (gRPC → private reply).
func (c *Codec) ResponseToProto(js []byte) ([]byte, error) {
	return jsonToProto(c.resp, js, "response")
}

func jsonToProto(md protoreflect.MessageDescriptor, js []byte, what string) ([]byte, error) {
	m := dynamicpb.NewMessage(md)
	if len(js) > 0 {
		if err := unmarshalJSON.Unmarshal(js, m); err != nil {
			if p := fieldPath(md, js); p != "" {
				return nil, fmt.Errorf("%w: %s body field %s: not a valid JSON %s: %w", ErrBody, what, p, md.FullName(), err)
			}
			return nil, fmt.Errorf("%w: %s body is not a JSON %s: %w", ErrBody, what, md.FullName(), err)
		}
	}
	out, err := proto.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %s body: %w", ErrBody, what, err)
	}
	return out, nil
}

func protoToJSON(md protoreflect.MessageDescriptor, pb []byte, what string) ([]byte, error) {
	m := dynamicpb.NewMessage(md)
	if err := proto.Unmarshal(pb, m); err != nil {
		return nil, fmt.Errorf("%w: %s body is not a protobuf %s: %w", ErrBody, what, md.FullName(), err)
	}
	out, err := marshalJSON.Marshal(m)
	if err != nil {
		return nil, fmt.Errorf("%w: %s body: %w", ErrBody, what, err)
	}
	return out, nil
}
