// Package xdstest holds what the xds package's tests and the e2e tests
// share to drive the xDS control plane: a config's model, the PKI of a
// mutual-TLS control plane, an ADS client, and the first secrets a node is
// sent (state of the world and delta). It
// is apart from testkit so that only the tests that speak xDS link
// go-control-plane's discovery API. Import it only from _test.go files.
package xdstest

import (
	"context"
	"crypto/tls"
	"io"
	"path/filepath"
	"testing"

	core "github.com/envoyproxy/go-control-plane/envoy/config/core/v3"
	discovery "github.com/envoyproxy/go-control-plane/envoy/service/discovery/v3"
	"github.com/envoyproxy/go-control-plane/pkg/resource/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/meshgate/meshgate/internal/testkit"
	"github.com/meshgate/meshgate/internal/testpki"
	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/xds/model"
)

// Model is the control plane's model of cfg (cfg.XDSModel), as the
// runtime builds it; an error fails the test.
func Model(tb testing.TB, cfg *config.Config) *model.XDS {
	tb.Helper()
	m, err := cfg.XDSModel()
	if err != nil {
		tb.Fatal(err)
	}
	return m
}

// PKI is the test PKI of a mutual-TLS control plane in Dir: a CA
// (ca.pem), the control plane's certificate (xds.pem; testpki leaves name
// 127.0.0.1 and localhost) and the client certificates Client issues.
type PKI struct {
	Dir string
	CA  *testpki.CA
}

// NewPKI writes the CA and the control plane's certificate into dir; a nil
// ca is a new one.
func NewPKI(tb testing.TB, dir string, ca *testpki.CA) *PKI {
	tb.Helper()
	if ca == nil {
		var err error
		if ca, err = testpki.NewCA("meshgate-xds-test-ca"); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := ca.WriteCA(dir); err != nil {
		tb.Fatal(err)
	}
	p := &PKI{Dir: dir, CA: ca}
	p.Client(tb, "xds")
	return p
}

// files are name's certificate, key and the CA in p.Dir.
func (p *PKI) files(name string) testpki.TLSFiles {
	return testpki.TLSFiles{CertFile: filepath.Join(p.Dir, name+".pem"), KeyFile: filepath.Join(p.Dir, name+"-key.pem"), CAFile: filepath.Join(p.Dir, "ca.pem")}
}

// Server is the control plane's certificate, key and CA (an xds.tls block).
func (p *PKI) Server() testpki.TLSFiles { return p.files("xds") }

// Client issues Dir/name.pem (CN name; sans "spiffe://…" become URI SANs,
// other names DNS SANs) and returns its files.
func (p *PKI) Client(tb testing.TB, name string, sans ...string) testpki.TLSFiles {
	tb.Helper()
	if _, _, err := p.CA.Issue(p.Dir, name, sans...); err != nil {
		tb.Fatal(err)
	}
	return p.files(name)
}

// Creds are grpc-go credentials towards the control plane at 127.0.0.1
// trusting the CA and presenting the certificate Client issued for name
// (none when name is empty).
func (p *PKI) Creds(tb testing.TB, name string) credentials.TransportCredentials {
	tb.Helper()
	f := p.files(name)
	if name == "" {
		f.CertFile, f.KeyFile = "", ""
	}
	cfg, err := f.ClientConfig("127.0.0.1")
	if err != nil {
		tb.Fatal(err)
	}
	cfg.MinVersion = tls.VersionTLS12
	return credentials.NewTLS(cfg)
}

// ADS is an ADS client of the control plane at target (host:port, or
// unix://path) over creds, closed at cleanup.
func ADS(tb testing.TB, target string, creds credentials.TransportCredentials) discovery.AggregatedDiscoveryServiceClient {
	tb.Helper()
	return discovery.NewAggregatedDiscoveryServiceClient(testkit.Dial(tb, target, grpc.WithTransportCredentials(creds)))
}

// FirstSecrets opens a state-of-the-world stream, asks for every secret as
// node and returns the first response or the stream's error.
func FirstSecrets(ctx context.Context, c discovery.AggregatedDiscoveryServiceClient, node string) (*discovery.DiscoveryResponse, error) {
	st, err := c.StreamAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discovery.DiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.SecretType}); err != nil && err != io.EOF {
		return nil, err
	}
	return st.Recv() // after io.EOF from Send: the stream's status
}

// FirstDeltaSecrets is FirstSecrets over an incremental (delta) stream
// subscribed to every secret.
func FirstDeltaSecrets(ctx context.Context, c discovery.AggregatedDiscoveryServiceClient, node string) (*discovery.DeltaDiscoveryResponse, error) {
	st, err := c.DeltaAggregatedResources(ctx)
	if err != nil {
		return nil, err
	}
	if err := st.Send(&discovery.DeltaDiscoveryRequest{Node: &core.Node{Id: node}, TypeUrl: resource.SecretType, ResourceNamesSubscribe: []string{"*"}}); err != nil && err != io.EOF {
		return nil, err
	}
	return st.Recv()
}
