package config

import (
	"fmt"
	"path/filepath"
	"time"
)

// TLSSettings are process-wide settings of the TLS MeshGate terminates and
// originates itself (listeners[].tls, upstreams[].tls). The Envoy TLS of
// xds.envoy[] is refreshed by xds.cert_poll instead.
//
//	tls:
//	  refresh_interval: 1m   # how often cert, key and CA files are re-read
type TLSSettings struct {
	// RefreshInterval is how often certificate, key and CA files are
	// re-read; changed files apply to new handshakes, established
	// connections are kept. Default 1m.
	RefreshInterval time.Duration `yaml:"refresh_interval,omitempty" json:"refresh_interval,omitempty"`
}

// DefaultTLSRefresh is the default tls.refresh_interval.
const DefaultTLSRefresh = time.Minute

// MinTLSRefresh is the smallest tls.refresh_interval accepted.
const MinTLSRefresh = 10 * time.Millisecond

func (c *Config) applyTLSDefaults() {
	setDefault(&c.TLS.RefreshInterval, DefaultTLSRefresh)
}

// validateTLS checks tls and the data-path TLS blocks (listeners[].tls,
// upstreams[].tls) beyond checkTLS: certificate and key files are watched
// as a pair and must live in the same directory (so a Kubernetes Secret
// volume's atomic symlink swap replaces both at once).
func (c *Config) validateTLS(e *errs) {
	checkMin(e, "tls.refresh_interval", c.TLS.RefreshInterval, MinTLSRefresh)
	pair := func(f string, t *TLS) {
		if t == nil || t.CertFile == "" || t.KeyFile == "" {
			return
		}
		if filepath.Dir(c.Path(t.CertFile)) != filepath.Dir(c.Path(t.KeyFile)) {
			e.add(f+".key_file", "must be in the same directory as cert_file (%s)", filepath.Dir(c.Path(t.CertFile)))
		}
	}
	for i := range c.Listeners {
		pair(fmt.Sprintf("listeners[%d].tls", i), c.Listeners[i].TLS)
	}
	for i := range c.Upstreams {
		pair(fmt.Sprintf("upstreams[%d].tls", i), c.Upstreams[i].TLS)
	}
}

// ResolveTLS returns a copy of t with its file paths resolved against the
// config file's directory (nil for nil).
func (c *Config) ResolveTLS(t *TLS) *TLS {
	if t == nil {
		return nil
	}
	r := *t
	r.CertFile, r.KeyFile, r.CAFile = c.Path(t.CertFile), c.Path(t.KeyFile), c.Path(t.CAFile)
	return &r
}
