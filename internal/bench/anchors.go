package bench

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/meshgate/meshgate/internal/demo"
	"github.com/meshgate/meshgate/meshgate/config"
)

// The anchor scenarios put MeshGate's hops beside what Envoy does for the
// same job on the same machine in the same run:
//
//	EL7  grpc-go client → Envoy (HCM + router, HTTP/2 upstream) → grpc-go server
//	HJ   HTTP/1.1 JSON client → Go net/http JSON echo server (direct)
//	EJT  HTTP/1.1 JSON client → Envoy (grpc_json_transcoder) → grpc-go server
//	MPP  MGP client → MeshGate (private→private) → legacy server (vs S1)
//	MGG  grpc-go client → MeshGate (gRPC→gRPC) → grpc-go server (vs S5, EL7)

// skipError marks a scenario that cannot run on this build of the product
// (reported as skipped, not as a failure).
type skipError struct{ why string }

func (e *skipError) Error() string { return e.why }

// errSkip returns a skipError.
func errSkip(format string, args ...any) error { return &skipError{why: fmt.Sprintf(format, args...)} }

// isSkip returns the skip reason of err, or "".
func isSkip(err error) string {
	var s *skipError
	if errors.As(err, &s) {
		return s.why
	}
	return ""
}

// TranscoderService is the service the JSON transcoder exposes; its one
// method is demo.Echo/Echo with a message whose single string field
// "body" carries the payload. The grpc-go demo server echoes the raw
// request bytes, which is a valid Msg reply.
const TranscoderService = demo.Service

// EchoDescriptorSet returns a serialized FileDescriptorSet describing
// `service demo.Echo { rpc Echo(Msg) returns (Msg); }` with
// `message Msg { string body = 1; }`, built in Go (no protoc) and checked
// by protodesc.
func EchoDescriptorSet() ([]byte, error) {
	str := proto.String
	fd := &descriptorpb.FileDescriptorProto{
		Name:    str("meshgate/bench/demo_echo.proto"),
		Package: str("demo"),
		Syntax:  str("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: str("Msg"),
			Field: []*descriptorpb.FieldDescriptorProto{{
				Name: str("body"), JsonName: str("body"), Number: proto.Int32(1),
				Type:  descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum(),
				Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(),
			}},
		}},
		Service: []*descriptorpb.ServiceDescriptorProto{{
			Name: str("Echo"),
			Method: []*descriptorpb.MethodDescriptorProto{{
				Name: str("Echo"), InputType: str(".demo.Msg"), OutputType: str(".demo.Msg"),
			}},
		}},
	}
	if _, err := protodesc.NewFile(fd, nil); err != nil {
		return nil, fmt.Errorf("bench: echo descriptor: %w", err)
	}
	return proto.Marshal(&descriptorpb.FileDescriptorSet{File: []*descriptorpb.FileDescriptorProto{fd}})
}

// EnvoyHTTP makes an EnvoySpec an HTTP proxy: an http_connection_manager
// (codec AUTO: HTTP/1.1 or h2c) with the router, to an HTTP/2 upstream
// cluster, instead of tcp_proxy.
type EnvoyHTTP struct {
	// DescriptorFile, when set, adds grpc_json_transcoder for Services
	// (auto_mapping: POST /<service>/<method> with a JSON body).
	DescriptorFile string
	Services       []string
}

// httpBootstrap renders the HCM bootstrap of s (s.HTTP set).
func (s EnvoySpec) httpBootstrap(host, port string) string {
	var b strings.Builder
	s.bootstrapHead(&b)
	b.WriteString(`    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
`)
	fmt.Fprintf(&b, "          stat_prefix: %s\n", yamlQuote(s.Name))
	b.WriteString(`          codec_type: AUTO
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {prefix: "/"}
                route: {cluster: upstream, timeout: 0s}
          http_filters:
`)
	if h := s.HTTP; h.DescriptorFile != "" {
		b.WriteString(`          - name: envoy.filters.http.grpc_json_transcoder
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.grpc_json_transcoder.v3.GrpcJsonTranscoder
`)
		fmt.Fprintf(&b, "              proto_descriptor: %s\n", yamlQuote(h.DescriptorFile))
		b.WriteString("              services: [")
		for i, sv := range h.Services {
			if i > 0 {
				b.WriteString(", ")
			}
			b.WriteString(yamlQuote(sv))
		}
		b.WriteString("]\n              auto_mapping: true\n              convert_grpc_status: true\n")
	}
	b.WriteString(`          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: upstream
    connect_timeout: 2s
` + circuitBreakersYAML + `    type: STATIC
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}
    load_assignment:
      cluster_name: upstream
      endpoints:
      - lb_endpoints:
`)
	fmt.Fprintf(&b, "        - endpoint: {address: {socket_address: {address: %s, port_value: %s}}}\n", yamlQuote(host), port)
	return b.String()
}

// setupEL7: grpc-go client → Envoy L7 (HCM + router, h2 upstream) →
// grpc-go server.
func setupEL7(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	g, err := e.startServer(ctx, t, "grpc")
	if err != nil {
		return nil, err
	}
	in, err := e.startEnvoy(ctx, t, RoleEnvoyA, EnvoySpec{Name: "envoy-a", UpstreamAddr: g, HTTP: &EnvoyHTTP{}})
	if err != nil {
		return nil, err
	}
	t.dial = e.grpcDial(in)
	return t, nil
}

// setupHJ: HTTP/1.1 JSON client → Go net/http JSON echo server.
var setupHJ = setupDirect("httpjson", (*env).httpJSONDial)

// setupEJT: HTTP/1.1 JSON client → Envoy grpc_json_transcoder → grpc-go
// server, with the descriptor set generated at run time.
func setupEJT(ctx context.Context, e *env, t *topology) (_ *topology, err error) {
	defer guard(t, &err)
	g, err := e.startServer(ctx, t, "grpc")
	if err != nil {
		return nil, err
	}
	ds, err := EchoDescriptorSet()
	if err != nil {
		return nil, err
	}
	pb := filepath.Join(e.dir, "demo_echo.pb")
	if err := os.WriteFile(pb, ds, 0o644); err != nil {
		return nil, err
	}
	in, err := e.startEnvoy(ctx, t, RoleEnvoyA, EnvoySpec{Name: "envoy-a", UpstreamAddr: g,
		HTTP: &EnvoyHTTP{DescriptorFile: pb, Services: []string{TranscoderService}}})
	if err != nil {
		return nil, err
	}
	t.dial = e.httpJSONDial(in)
	return t, nil
}

// meshGatePrivToPriv is the MPP config: private listener, cmd EchoCmd to
// the legacy server's cmd EchoCmd (a private upstream).
func meshGatePrivToPriv(admin, listen, legacyAddr string) string {
	return echoConfig(admin, listen, config.KindPrivate, config.ProtoPrivate, legacyAddr, "")
}

// meshGateGRPCToGRPC is the MGG config: gRPC listener, demo.Echo/Echo to
// the same method on the grpc-go server (a gRPC upstream).
func meshGateGRPCToGRPC(admin, listen, grpcAddr string) string {
	return echoConfig(admin, listen, config.KindGRPC, config.ProtoGRPC, grpcAddr, "")
}

// productAccepts writes cfg and runs `meshgate validate -c` on it: the
// product binary (not this tree's config package) decides whether it
// supports a route kind. It returns a skip error naming what the product
// lacks when validation fails.
func (e *env) productAccepts(ctx context.Context, t *topology, name, cfg, lacks string) (string, error) {
	path, err := e.writeConfig(t, name, cfg)
	if err != nil {
		return "", err
	}
	out, err := exec.CommandContext(ctx, e.opts.MeshGate, "validate", "-c", path).CombinedOutput()
	if err != nil {
		var ee *exec.ExitError
		if !errors.As(err, &ee) {
			return "", fmt.Errorf("bench: meshgate validate: %w", err)
		}
		return "", errSkip("product lacks %s (meshgate validate: %s)", lacks, firstLine(strings.TrimSpace(string(out))))
	}
	return path, nil
}

// startMeshGateValidated is startMeshGate for a config the product may
// not support yet: validated by the binary, skipped when rejected.
func (e *env) startMeshGateValidated(ctx context.Context, t *topology, name, cfg, wait, lacks string) error {
	path, err := e.productAccepts(ctx, t, name, cfg, lacks)
	if err != nil {
		return err
	}
	return e.runMeshGate(ctx, t, name, path, wait)
}

var (
	// setupMPP: MGP client → MeshGate private→private → legacy server.
	setupMPP = setupBridge("legacy", "meshgate-mpp", meshGatePrivToPriv, "private→private", (*env).legacyDial)
	// setupMGG: grpc-go client → MeshGate gRPC→gRPC → grpc-go server.
	setupMGG = setupBridge("grpc", "meshgate-mgg", meshGateGRPCToGRPC, "gRPC→gRPC", (*env).grpcDial)
)
