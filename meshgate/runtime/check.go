package runtime

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/xds"
	"github.com/meshgate/meshgate/xds/model"
)

// Check is the one validation path: `meshgate validate` reports exactly
// what it returns, and every load and reload of `meshgate run` starts with
// it, so validate accepts a config if and only if run's build step (short of
// binding sockets and dialling) would. Beyond config.Validate it builds the
// declarative codecs (reading their files) and every listener's and
// upstream's codec, loads every certificate, key and CA file, builds every
// private listener's routing table (auth needs codec mgp) and translates
// the xds section. Every problem is returned (errors.Join), each naming its
// field by YAML path.
func Check(cfg *config.Config) error {
	if cfg == nil {
		return fmt.Errorf("%w: nil config", config.ErrInvalid)
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	var errs []error
	add := func(field string, err error) {
		errs = append(errs, fmt.Errorf("%w: %s: %s", config.ErrInvalid, field, trimInvalid(err)))
	}
	set, err := buildCodecs(cfg)
	if err != nil {
		errs = append(errs, err)
	}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		f := fmt.Sprintf("listeners[%d]", i)
		if l.TLS != nil {
			if err := checkTLSFiles(cfg, l.TLS); err != nil {
				add(f+".tls", err)
			}
		}
		if l.Kind != config.KindPrivate {
			continue
		}
		if set != nil {
			if _, err := set.get(l.Codec, l.MaxFrameSize); err != nil {
				add(f+".codec", err)
			}
		}
		if l.Auth != nil && l.Codec != "mgp" {
			add(f+".auth", fmt.Errorf("HMAC auth needs codec mgp, not %q", l.Codec))
			continue
		}
		if _, err := inbound.TableFromConfig(l, cfg.Defaults, func(name string) inbound.Target {
			for _, u := range cfg.Upstreams {
				if u.Name == name && u.Protocol == config.ProtoPrivate {
					return inbound.Target{Private: checkFrameUpstream{}}
				} else if u.Name == name {
					return inbound.Target{GRPC: checkUpstream{}}
				}
			}
			return inbound.Target{}
		}, nil); err != nil {
			add(f, err)
		}
	}
	for i := range cfg.Upstreams {
		u := &cfg.Upstreams[i]
		f := fmt.Sprintf("upstreams[%d]", i)
		if u.Protocol == config.ProtoPrivate {
			if set != nil {
				if _, err := set.get(u.Codec, 0); err != nil {
					add(f+".codec", err)
				}
			}
		}
		if u.TLS != nil {
			if err := checkTLSFiles(cfg, u.TLS); err != nil {
				add(f+".tls", err)
			}
		}
	}
	if x := cfg.XDS; x != nil {
		// The files the control plane serves (SDS secrets) or listens
		// with, each under its field; then the model and its translation.
		bad := false
		checkFiles := func(f string, t *config.TLS) {
			if t == nil {
				return
			}
			if err := checkTLSFiles(cfg, t); err != nil {
				add(f, err)
				bad = true
			}
		}
		checkFiles("xds.tls", x.TLS)
		for i, n := range x.Envoy {
			for j := range n.Listeners {
				checkFiles(fmt.Sprintf("xds.envoy[%d].listeners[%d].tls", i, j), n.Listeners[j].TLS)
			}
			for j := range n.Clusters {
				checkFiles(fmt.Sprintf("xds.envoy[%d].clusters[%d].tls", i, j), n.Clusters[j].TLS)
			}
		}
		if m, err := cfg.XDSModel(); err != nil {
			errs = append(errs, err) // each names its field
		} else if !bad {
			if err := checkXDSTranslation(m); err != nil {
				add("xds", err)
			}
		}
	}
	return errors.Join(errs...)
}

// checkXDSTranslation reads the certificate files of m and translates it
// as the control plane will.
func checkXDSTranslation(m *model.XDS) error {
	files := xds.Files{}
	for _, p := range xds.CertFiles(m) {
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		files[p] = b
	}
	_, err := xds.Translate(m, files)
	return err
}

// checkTLSFiles loads t's key pair and CA bundle (paths relative to the
// config file's directory) the way listeners and upstreams will.
func checkTLSFiles(cfg *config.Config, t *config.TLS) error {
	if t.CertFile != "" || t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(cfg.Path(t.CertFile), cfg.Path(t.KeyFile)); err != nil {
			return fmt.Errorf("cert_file/key_file: %w", err)
		}
	}
	if t.CAFile != "" {
		pem, err := os.ReadFile(cfg.Path(t.CAFile))
		if err != nil {
			return fmt.Errorf("ca_file: %w", err)
		}
		if !x509.NewCertPool().AppendCertsFromPEM(pem) {
			return fmt.Errorf("ca_file: %s: no PEM certificates", cfg.Path(t.CAFile))
		}
	}
	return nil
}

// trimInvalid drops the "config: invalid: " prefixes a wrapped error
// carries (the caller adds one).
func trimInvalid(err error) string {
	s := err.Error()
	for strings.HasPrefix(s, config.ErrInvalid.Error()+": ") {
		s = strings.TrimPrefix(s, config.ErrInvalid.Error()+": ")
	}
	return s
}

// checkUpstream stands in for a pool while Check builds routing tables.
type checkUpstream struct{ inbound.Upstream }

// checkFrameUpstream stands in for a private pool.
type checkFrameUpstream struct{ inbound.FrameUpstream }
