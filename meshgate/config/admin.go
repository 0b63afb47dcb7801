package config

import (
	"net"
	"strings"
)

// validateAdmin checks admin.* beyond the address syntax: admin.address
// must name its host (":9901" would silently bind every interface and
// expose /config and pprof); admin.health_address, which serves only
// /healthz, /readyz and /metrics, may bind any interface but must differ
// from admin.address.
func (c *Config) validateAdmin(e *errs) {
	a := &c.Admin
	if host, _, err := net.SplitHostPort(a.Address); err == nil && host == "" {
		e.add("admin.address", "%q binds every interface; name the host (127.0.0.1 keeps admin local, 0.0.0.0 exposes it on purpose)", a.Address)
	}
	if a.HealthAddress == "" {
		return
	}
	checkAddr(e, "admin.health_address", a.HealthAddress)
	if a.HealthAddress == a.Address && !strings.HasSuffix(a.Address, ":0") {
		e.add("admin.health_address", "must differ from admin.address (%s)", a.Address)
	}
}

// IsLoopback reports whether admin.address binds only loopback.
func (a *Admin) IsLoopback() bool {
	host, _, err := net.SplitHostPort(a.Address)
	return err == nil && isLoopback(host)
}
