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
	setDefault(&c.Admin.Address, DefaultAdminAddress)
	c.applyTLSDefaults()
	d := &c.Defaults
	setDefault(&d.Timeout, DefaultTimeout)
	setDefault(&d.DrainTimeout, DefaultDrainTimeout)
	setDefault(&d.MaxInFlight, DefaultMaxInFlight)
	setDefault(&d.IdleTimeout, DefaultIdleTimeout)
	setDefault(&d.ReadTimeout, DefaultReadTimeout)
	for i := range c.Listeners {
		l := &c.Listeners[i]
		if l.Kind == KindPrivate && l.Codec == "" {
			l.Codec = "mgp"
		}
		setDefault(&l.MaxInFlight, d.MaxInFlight)
		if l.Auth != nil && l.Auth.MaxSkew == 0 {
			l.Auth.MaxSkew = DefaultMaxSkew
		}
		applyAuthDefaults(l)
		for j := range l.Routes {
			setDefault(&l.Routes[j].Timeout, d.Timeout)
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
		checkName(&e, f+".name", cs.Name, "codec", codecs)
		if (cs.File == "") == (cs.Spec.Kind == 0) {
			e.add(f, "exactly one of file or spec is required")
		}
	}
	upNames := map[string]bool{}
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		f := fmt.Sprintf("upstreams[%d]", i)
		checkName(&e, f+".name", u.Name, "upstream", upNames)
		if checkOneOf(&e, f+".protocol", u.Protocol, ProtoGRPC, ProtoPrivate) && u.Protocol == ProtoPrivate && !codecs[u.Codec] {
			e.add(f+".codec", "unknown codec %q", u.Codec)
		}
		checkListed(&e, f+".endpoints", len(u.Endpoints), "endpoint")
		for j, ep := range u.Endpoints {
			if IsXDSTarget(ep) {
				checkXDSEndpoint(&e, fmt.Sprintf("%s.endpoints[%d]", f, j), u)
				continue
			}
			checkAddr(&e, fmt.Sprintf("%s.endpoints[%d]", f, j), ep)
		}
		checkOneOf(&e, f+".lb", u.LB, LBRoundRobin, LBLeastRequest, LBConsistentHash)
		checkRange(&e, f+".connections", u.Connections, 0, 64) // 0: the default
		checkNotNegative(&e, f+".max_in_flight", u.MaxInFlight)
		checkTLS(&e, f+".tls", u.TLS, false)
		checkGRPCTransport(&e, f, u)
	}
	ups := c.upstreamsByName()
	names := map[string]bool{}
	addrs := map[string]string{}
	for i := range c.Listeners {
		l := &c.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		checkName(&e, f+".name", l.Name, "listener", names)
		checkAddr(&e, f+".address", l.Address)
		if prev, dup := addrs[l.Address]; dup && l.Address != "" && !strings.HasSuffix(l.Address, ":0") {
			e.add(f+".address", "%s already used by listener %q", l.Address, prev)
		}
		addrs[l.Address] = l.Name
		if checkOneOf(&e, f+".kind", l.Kind, KindPrivate, KindGRPC) && l.Kind == KindPrivate {
			if !codecs[l.Codec] {
				e.add(f+".codec", "unknown codec %q", l.Codec)
			}
			checkRange(&e, f+".max_frame_size", l.MaxFrameSize, 0, 64<<20) // 0: the default
		}
		checkNotNegative(&e, f+".max_in_flight", l.MaxInFlight)
		if l.Auth != nil {
			checkListed(&e, f+".auth.keys", len(l.Auth.Keys), "key")
		}
		checkTLS(&e, f+".tls", l.TLS, true)
		checkListenerTransport(&e, f, l)
		validateAuth(&e, f, l)
		for j, r := range l.Routes {
			rf := fmt.Sprintf("%s.routes[%d]", f, j)
			u := checkUpstreamRef(&e, rf+".upstream", r.Upstream, ups)
			checkRouteTarget(&e, rf, l.Kind, r, u)
			if r.UINMax > 0 && r.UINMin > r.UINMax {
				e.add(rf+".uin_min", "greater than uin_max")
			}
			checkNotNegative(&e, rf+".timeout", r.Timeout)
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
