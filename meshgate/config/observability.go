package config

// Observability and gRPC-ecosystem settings (see docs/observability.md):
//
//	telemetry:
//	  tracing:                       # absent = no tracing, no cost
//	    otlp_endpoint: 127.0.0.1:4317
//	    insecure: true               # or tls: {ca_file: ..., cert_file/key_file for mTLS}
//	    sampling_ratio: 0.1          # parent-based; default 1
//	    service_name: meshgate-idc   # default "meshgate"
//	    resource_attributes: {deployment.environment: prod}
//	  grpc_metrics: true             # grpc-go's OpenTelemetry metrics on /metrics
//	access_log:                      # absent = off
//	  path: stdout                   # stdout | stderr | a file path
//	  sample_ratio: 1                # fraction of requests logged; default 1
//	  hash_uin: true                 # log sha256(uin) instead of the uin
//	listeners:
//	- name: grpc-in
//	  kind: grpc
//	  max_recv_msg_size: 4194304     # grpc listeners; default 4 MiB
//	  max_send_msg_size: 4194304
//	  reflection: {descriptor_sets: [legacy.protoset]}
//	  metadata: [{ext: 0x8001, key: x-request-id}]
//	  routes:
//	  - method: /pkg.Svc/Get
//	    cmd: 7
//	    upstream: legacy
//	    body: {format: json, request_type: pkg.GetReq, response_type: pkg.GetResp}

import (
	"fmt"
	"net"
	"strings"

	"github.com/meshgate/meshgate/codec"
)

// DefaultMaxMsgSize is grpc-go's default maximum received message size, used
// for both directions when max_recv_msg_size / max_send_msg_size are unset.
const DefaultMaxMsgSize = 4 << 20

// Telemetry is the top-level "telemetry" section.
type Telemetry struct {
	// Tracing, when set, records OpenTelemetry spans and exports them over
	// OTLP/gRPC. Absent: no spans (the no-op tracer; traceparent is still
	// carried through unchanged).
	Tracing *Tracing `yaml:"tracing,omitempty" json:"tracing,omitempty"`
	// GRPCMetrics exports grpc-go's standard OpenTelemetry metrics
	// (grpc.server.call.duration, grpc.client.attempt.duration, sizes, ...)
	// on the admin /metrics endpoint. Off by default.
	GRPCMetrics bool `yaml:"grpc_metrics,omitempty" json:"grpc_metrics,omitempty"`
}

// Tracing configures the OTLP trace exporter.
type Tracing struct {
	// OTLPEndpoint is the collector's OTLP/gRPC address, host:port.
	OTLPEndpoint string `yaml:"otlp_endpoint" json:"otlp_endpoint"`
	// Insecure sends spans in plaintext (only sensible on loopback or a
	// sidecar collector). Exactly one of Insecure and TLS is required.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure,omitempty"`
	// TLS verifies the collector with ca_file (cert_file/key_file add a
	// client certificate).
	TLS *TLS `yaml:"tls,omitempty" json:"tls,omitempty"`
	// SamplingRatio is the fraction of new traces sampled (parent-based: a
	// sampled parent is always followed); default 1, must be in [0, 1].
	SamplingRatio *float64 `yaml:"sampling_ratio,omitempty" json:"sampling_ratio,omitempty"`
	// ServiceName is the service.name resource attribute; default "meshgate".
	ServiceName string `yaml:"service_name,omitempty" json:"service_name,omitempty"`
	// ResourceAttributes are added to the resource of every span.
	ResourceAttributes map[string]string `yaml:"resource_attributes,omitempty" json:"resource_attributes,omitempty"`
}

// Ratio returns the sampling ratio after defaults.
func (t *Tracing) Ratio() float64 { return ratio(t.SamplingRatio) }

// AccessLog is the top-level "access_log" section: one JSON line per
// bridged request.
type AccessLog struct {
	// Path is "stdout" (default), "stderr" or a file (appended to, created
	// 0600; relative paths are resolved against the config file).
	Path string `yaml:"path,omitempty" json:"path,omitempty"`
	// SampleRatio is the fraction of requests logged, in (0, 1]; default 1.
	SampleRatio *float64 `yaml:"sample_ratio,omitempty" json:"sample_ratio,omitempty"`
	// HashUIN logs the first 16 hex digits of sha256(uin) instead of the
	// uin itself.
	HashUIN bool `yaml:"hash_uin,omitempty" json:"hash_uin,omitempty"`
}

// Ratio returns the sample ratio after defaults.
func (a *AccessLog) Ratio() float64 { return ratio(a.SampleRatio) }

// ratio is a ratio field after defaults: unset is 1.
func ratio(r *float64) float64 {
	if r == nil {
		return 1
	}
	return *r
}

// ListenerObservability holds a listener's observability and gRPC
// ecosystem fields; it is inlined into Listener.
type ListenerObservability struct {
	// MaxRecvMsgSize / MaxSendMsgSize bound gRPC messages on a grpc
	// listener; default 4 MiB each.
	MaxRecvMsgSize int `yaml:"max_recv_msg_size,omitempty" json:"max_recv_msg_size,omitempty"`
	MaxSendMsgSize int `yaml:"max_send_msg_size,omitempty" json:"max_send_msg_size,omitempty"`
	// Reflection names descriptor sets of the routed services. A grpc
	// listener serves them on the gRPC reflection service; on any listener
	// they resolve the message types of body transcoding.
	Reflection *Reflection `yaml:"reflection,omitempty" json:"reflection,omitempty"`
	// Metadata maps application extensions to plain metadata keys (instead
	// of x-mgp-ext-<k>-bin), both ways, on requests and replies.
	Metadata []MetadataPair `yaml:"metadata,omitempty" json:"metadata,omitempty"`
}

// Reflection names the descriptors of the routed services.
type Reflection struct {
	// DescriptorSets are FileDescriptorSet files (protoc
	// --descriptor_set_out --include_imports, buf build -o x.protoset) or
	// .proto sources compiled at load time; relative paths are resolved
	// against the config file.
	DescriptorSets []string `yaml:"descriptor_sets" json:"descriptor_sets"`
}

// MetadataPair maps application extension Ext to metadata key Key.
type MetadataPair struct {
	Ext uint16 `yaml:"ext" json:"ext"`
	Key string `yaml:"key" json:"key"`
	// Trailer sends the pair on a reply as a gRPC trailer instead of a
	// header (replies read both).
	Trailer bool `yaml:"trailer,omitempty" json:"trailer,omitempty"`
}

// RouteObservability holds a route's body transcoding; it is inlined into
// Route.
type RouteObservability struct {
	Body *Body `yaml:"body,omitempty" json:"body,omitempty"`
}

// Body formats.
const (
	BodyProto = "proto" // bytes as they are (the default)
	BodyJSON  = "json"  // JSON on the private side, protobuf on the gRPC side
)

// Body declares the private-side body format of a route. Types are
// resolved in the listener's reflection descriptor sets.
type Body struct {
	Format       string `yaml:"format" json:"format"`
	RequestType  string `yaml:"request_type,omitempty" json:"request_type,omitempty"`
	ResponseType string `yaml:"response_type,omitempty" json:"response_type,omitempty"`
}

// UpstreamObservability holds an upstream's gRPC message limits; it is
// inlined into Upstream.
type UpstreamObservability struct {
	// MaxRecvMsgSize / MaxSendMsgSize bound messages on a grpc upstream;
	// default 4 MiB each.
	MaxRecvMsgSize int `yaml:"max_recv_msg_size,omitempty" json:"max_recv_msg_size,omitempty"`
	MaxSendMsgSize int `yaml:"max_send_msg_size,omitempty" json:"max_send_msg_size,omitempty"`
}

// RecvSize returns the receive limit after defaults.
func (o ListenerObservability) RecvSize() int { return orDefault(o.MaxRecvMsgSize) }

// SendSize returns the send limit after defaults.
func (o ListenerObservability) SendSize() int { return orDefault(o.MaxSendMsgSize) }

// RecvSize returns the receive limit after defaults.
func (o UpstreamObservability) RecvSize() int { return orDefault(o.MaxRecvMsgSize) }

// SendSize returns the send limit after defaults.
func (o UpstreamObservability) SendSize() int { return orDefault(o.MaxSendMsgSize) }

func orDefault(n int) int {
	if n <= 0 {
		return DefaultMaxMsgSize
	}
	return n
}

// maxMsgSizeLimit bounds configured message sizes (1 GiB).
const maxMsgSizeLimit = 1 << 30

// validateObservability checks the telemetry, access_log and per-listener /
// per-route / per-upstream observability fields.
func (c *Config) validateObservability(e *errs) {
	if t := c.Telemetry; t != nil && t.Tracing != nil {
		tr := t.Tracing
		const f = "telemetry.tracing"
		if tr.OTLPEndpoint == "" {
			e.add(f+".otlp_endpoint", "required (host:port of an OTLP/gRPC collector)")
		} else if _, _, err := net.SplitHostPort(tr.OTLPEndpoint); err != nil {
			e.add(f+".otlp_endpoint", "%v", err)
		}
		switch {
		case tr.Insecure && tr.TLS != nil:
			e.add(f+".insecure", "contradicts telemetry.tracing.tls; remove one")
		case !tr.Insecure && tr.TLS == nil:
			e.add(f+".tls", "required unless telemetry.tracing.insecure: true")
		}
		if tr.TLS != nil {
			checkTLS(e, f+".tls", tr.TLS, false)
		}
		checkRange(e, f+".sampling_ratio", tr.Ratio(), 0, 1)
		for k := range tr.ResourceAttributes {
			if k == "" {
				e.add(f+".resource_attributes", "empty attribute name")
			}
		}
	}
	if a := c.AccessLog; a != nil {
		if r := a.Ratio(); r <= 0 || r > 1 || r != r {
			e.add("access_log.sample_ratio", "must be in (0, 1], got %v", r)
		}
	}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		f := fmt.Sprintf("upstreams[%d]", i)
		checkMsgSize(e, f+".max_recv_msg_size", u.MaxRecvMsgSize)
		checkMsgSize(e, f+".max_send_msg_size", u.MaxSendMsgSize)
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		checkMsgSize(e, f+".max_recv_msg_size", l.MaxRecvMsgSize)
		checkMsgSize(e, f+".max_send_msg_size", l.MaxSendMsgSize)
		if l.Kind != KindGRPC && (l.MaxRecvMsgSize != 0 || l.MaxSendMsgSize != 0) {
			e.add(f+".max_recv_msg_size", "only for grpc listeners (a private listener has max_frame_size; its upstreams have max_recv_msg_size)")
		}
		if r := l.Reflection; r != nil {
			checkListed(e, f+".reflection.descriptor_sets", len(r.DescriptorSets), "file")
			for j, p := range r.DescriptorSets {
				if p == "" {
					e.add(fmt.Sprintf("%s.reflection.descriptor_sets[%d]", f, j), "empty path")
				}
			}
		}
		exts, keys := map[uint16]bool{}, map[string]bool{}
		for j, m := range l.Metadata {
			mf := fmt.Sprintf("%s.metadata[%d]", f, j)
			if m.Ext < codec.ExtAppMin {
				e.add(mf+".ext", "must be an application extension in [0x8000, 0xffff], got %#x", m.Ext)
			}
			if exts[m.Ext] {
				e.add(mf+".ext", "duplicate extension %#x", m.Ext)
			}
			exts[m.Ext] = true
			if err := checkMDKey(m.Key); err != nil {
				e.add(mf+".key", "%v", err)
			}
			if keys[m.Key] {
				e.add(mf+".key", "duplicate key %q", m.Key)
			}
			keys[m.Key] = true
		}
		for j, r := range l.Routes {
			if r.Body == nil {
				continue
			}
			bf := fmt.Sprintf("%s.routes[%d].body", f, j)
			switch r.Body.Format {
			case BodyProto, "":
			case BodyJSON:
				if r.Body.RequestType == "" {
					e.add(bf+".request_type", "required for format json")
				}
				if r.Body.ResponseType == "" {
					e.add(bf+".response_type", "required for format json")
				}
				if l.Reflection == nil {
					e.add(bf, "needs %s.reflection.descriptor_sets to resolve the types", f)
				}
			default:
				e.add(bf+".format", "must be %q or %q, got %q", BodyProto, BodyJSON, r.Body.Format)
			}
		}
	}
}

// checkMDKey checks a plain metadata key for the metadata mapping.
func checkMDKey(k string) error {
	switch {
	case k == "":
		return fmt.Errorf("required")
	case k != strings.ToLower(k):
		return fmt.Errorf("%q: metadata keys are lower case", k)
	case strings.HasPrefix(k, "grpc-") || strings.HasPrefix(k, ":"):
		return fmt.Errorf("%q: reserved by gRPC", k)
	case strings.HasPrefix(k, "x-mgp-") || k == "traceparent" || k == "tracestate":
		return fmt.Errorf("%q: already mapped by MeshGate", k)
	}
	for _, r := range k {
		if !(r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return fmt.Errorf("%q: invalid character %q", k, r)
		}
	}
	return nil
}

func checkMsgSize(e *errs, field string, n int) {
	checkRange(e, field, n, 0, maxMsgSizeLimit) // 0: the default
}
