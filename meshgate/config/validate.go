package config

import (
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"time"
)

// Default values.
const (
	DefaultAdminAddress = "127.0.0.1:9901"
	DefaultTimeout      = 3 * time.Second
	DefaultDrainTimeout = 10 * time.Second
	DefaultMaxInFlight  = 1024
	DefaultIdleTimeout  = 5 * time.Minute
	DefaultHeartbeat    = 10 * time.Second
	DefaultConnections  = 2
	DefaultMaxSkew      = 30 * time.Second
	DefaultReadTimeout  = 10 * time.Second
)

// BaseDir is the directory relative paths are resolved against.
func (c *Config) BaseDir() string { return c.baseDir }

// Path resolves p against the config file's directory.
func (c *Config) Path(p string) string {
	if p == "" || filepath.IsAbs(p) || c.baseDir == "" {
		return p
	}
	return filepath.Join(c.baseDir, p)
}

// ApplyDefaults fills zero values with defaults.
func (c *Config) ApplyDefaults() {
	if c.Admin.Address == "" {
		c.Admin.Address = DefaultAdminAddress
	}
	c.applyTLSDefaults()
	d := &c.Defaults
	if d.Timeout == 0 {
		d.Timeout = DefaultTimeout
	}
	if d.DrainTimeout == 0 {
		d.DrainTimeout = DefaultDrainTimeout
	}
	if d.MaxInFlight == 0 {
		d.MaxInFlight = DefaultMaxInFlight
	}
	if d.IdleTimeout == 0 {
		d.IdleTimeout = DefaultIdleTimeout
	}
	if d.ReadTimeout == 0 {
		d.ReadTimeout = DefaultReadTimeout
	}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Kind == KindPrivate && l.Codec == "" {
			l.Codec = "mgp"
		}
		if l.MaxInFlight == 0 {
			l.MaxInFlight = d.MaxInFlight
		}
		if l.Auth != nil && l.Auth.MaxSkew == 0 {
			l.Auth.MaxSkew = DefaultMaxSkew
		}
		applyAuthDefaults(l)
		for j := range l.Routes {
			if l.Routes[j].Timeout == 0 {
				l.Routes[j].Timeout = d.Timeout
			}
		}
	}
	for i := range c.Upstreams {
		c.Upstreams[i] = c.Upstreams[i].WithDefaults()
	}
	if c.XDS != nil {
		c.XDS.applyDefaults()
	}
	c.applyLimitDefaults()
	c.applyLifecycleDefaults()
	c.applyMigrateDefaults()
	c.applyPushDefaults()
	c.applyResilienceDefaults()
}

// errs collects field errors.
type errs []error

func (e *errs) add(field, format string, args ...any) {
	*e = append(*e, fmt.Errorf("%w: %s: %s", ErrInvalid, field, fmt.Sprintf(format, args...)))
}

// Validate checks the whole config and returns every problem found, each
// naming its field, joined with errors.Join.
func (c *Config) Validate() error {
	var e errs
	c.validateLifecycle(&e)
	checkAddr(&e, "admin.address", c.Admin.Address)
	codecs := registeredCodecs()
	for i, cs := range c.Codecs {
		f := fmt.Sprintf("codecs[%d]", i)
		switch {
		case cs.Name == "":
			e.add(f+".name", "required")
		case codecs[cs.Name]:
			e.add(f+".name", "duplicate codec %q", cs.Name)
		}
		codecs[cs.Name] = true
		if (cs.File == "") == (cs.Spec.Kind == 0) {
			e.add(f, "exactly one of file or spec is required")
		}
	}
	ups := map[string]*Upstream{}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		f := fmt.Sprintf("upstreams[%d]", i)
		if u.Name == "" {
			e.add(f+".name", "required")
		} else if ups[u.Name] != nil {
			e.add(f+".name", "duplicate upstream %q", u.Name)
		}
		ups[u.Name] = u
		switch u.Protocol {
		case ProtoGRPC:
		case ProtoPrivate:
			if !codecs[u.Codec] {
				e.add(f+".codec", "unknown codec %q", u.Codec)
			}
		default:
			e.add(f+".protocol", "must be %q or %q, got %q", ProtoGRPC, ProtoPrivate, u.Protocol)
		}
		if len(u.Endpoints) == 0 {
			e.add(f+".endpoints", "at least one endpoint is required")
		}
		for j, ep := range u.Endpoints {
			if IsXDSTarget(ep) {
				checkXDSEndpoint(&e, fmt.Sprintf("%s.endpoints[%d]", f, j), u)
				continue
			}
			checkAddr(&e, fmt.Sprintf("%s.endpoints[%d]", f, j), ep)
		}
		switch u.LB {
		case LBRoundRobin, LBLeastRequest, LBConsistentHash:
		default:
			e.add(f+".lb", "must be one of %s, %s, %s; got %q", LBRoundRobin, LBLeastRequest, LBConsistentHash, u.LB)
		}
		if u.Connections < 0 || u.Connections > 64 {
			e.add(f+".connections", "must be in [1, 64], got %d", u.Connections)
		}
		if u.MaxInFlight < 0 {
			e.add(f+".max_in_flight", "must be positive")
		}
		checkTLS(&e, f+".tls", u.TLS, false)
		checkGRPCTransport(&e, f, u)
	}
	names := map[string]bool{}
	addrs := map[string]string{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if l.Name == "" {
			e.add(f+".name", "required")
		} else if names[l.Name] {
			e.add(f+".name", "duplicate listener %q", l.Name)
		}
		names[l.Name] = true
		checkAddr(&e, f+".address", l.Address)
		if prev, dup := addrs[l.Address]; dup && l.Address != "" && !strings.HasSuffix(l.Address, ":0") {
			e.add(f+".address", "%s already used by listener %q", l.Address, prev)
		}
		addrs[l.Address] = l.Name
		switch l.Kind {
		case KindPrivate:
			if !codecs[l.Codec] {
				e.add(f+".codec", "unknown codec %q", l.Codec)
			}
			if l.MaxFrameSize < 0 || l.MaxFrameSize > 64<<20 {
				e.add(f+".max_frame_size", "must be in [64, 67108864], got %d", l.MaxFrameSize)
			}
		case KindGRPC:
		default:
			e.add(f+".kind", "must be %q or %q, got %q", KindPrivate, KindGRPC, l.Kind)
		}
		if l.MaxInFlight < 0 {
			e.add(f+".max_in_flight", "must be positive")
		}
		if l.Auth != nil && len(l.Auth.Keys) == 0 {
			e.add(f+".auth.keys", "at least one key is required")
		}
		checkTLS(&e, f+".tls", l.TLS, true)
		validateAuth(&e, f, l)
		for j, r := range l.Routes {
			rf := fmt.Sprintf("%s.routes[%d]", f, j)
			u := ups[r.Upstream]
			switch {
			case r.Upstream == "":
				e.add(rf+".upstream", "required")
			case u == nil:
				e.add(rf+".upstream", "unknown upstream %q", r.Upstream)
			}
			checkRouteTarget(&e, rf, l.Kind, r, u)
			if r.UINMax > 0 && r.UINMin > r.UINMax {
				e.add(rf+".uin_min", "greater than uin_max")
			}
			if r.Timeout < 0 {
				e.add(rf+".timeout", "must not be negative")
			}
			checkRouteMapping(&e, rf, l.Kind, r)
		}
	}
	if c.XDS != nil {
		c.XDS.validate(c, &e)
	}
	c.validateAdmin(&e)
	c.validateTLS(&e)
	c.validateLimits(&e)
	c.validateMigrate(&e)
	c.validatePush(&e)
	c.validateResilience(&e)
	c.validateObservability(&e)
	if len(e) == 0 {
		return nil
	}
	return joinErrs(e)
}

// CheckMethod validates a gRPC full method name "/pkg.Service/Method". With
// wildcard, "/pkg.Service/*" is accepted too.
func CheckMethod(m string, wildcard bool) error {
	if m == "" {
		return fmt.Errorf("required")
	}
	if !strings.HasPrefix(m, "/") {
		return fmt.Errorf("%q must start with /", m)
	}
	parts := strings.Split(m[1:], "/")
	if len(parts) != 2 || parts[0] == "" || parts[1] == "" {
		return fmt.Errorf("%q must be /package.Service/Method", m)
	}
	for _, p := range parts {
		if p == "." || p == ".." || strings.ContainsAny(p, "\x00 \t\r\n") {
			return fmt.Errorf("%q contains an invalid segment", m)
		}
	}
	if parts[1] == "*" && !wildcard {
		return fmt.Errorf("%q: wildcard not allowed here", m)
	}
	return nil
}

func checkAddr(e *errs, field, addr string) {
	if addr == "" {
		e.add(field, "required")
		return
	}
	if strings.HasPrefix(addr, "unix:") {
		return
	}
	if _, _, err := net.SplitHostPort(addr); err != nil {
		e.add(field, "%v", err)
	}
}

func checkTLS(e *errs, field string, t *TLS, server bool) {
	if t == nil {
		return
	}
	if t.CertFile == "" && server {
		e.add(field+".cert_file", "required")
	}
	if (t.CertFile == "") != (t.KeyFile == "") {
		e.add(field+".key_file", "cert_file and key_file go together")
	}
	if !server && t.CAFile == "" {
		e.add(field+".ca_file", "required to verify the upstream")
	}
}
