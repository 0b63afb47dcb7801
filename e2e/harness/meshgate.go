package harness

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/meshgate/meshgate/meshgate/addrfile"
)

// Meshgate is a running `meshgate run` started by StartMeshgate: its
// config may put every listener, admin and health on port 0, and the
// addresses it bound are read back from `-address-file`.
type Meshgate struct {
	*Proc
	t        testing.TB
	Dir      string // holds the config file and the address file
	CfgPath  string
	addrFile string
	amu      sync.Mutex // guards addrs: Reload rewrites it while tests read it
	addrs    BoundAddrs
}

// BoundAddrs is the document `meshgate run -address-file` writes.
type BoundAddrs = addrfile.Addrs

// MeshgateOption adjusts StartMeshgate.
type MeshgateOption func(*meshgateOpts)

type meshgateOpts struct {
	args   []string
	wrap   []string
	dir    string
	ready  time.Duration
	noWait bool
}

// Args appends arguments to `meshgate run -c FILE -address-file F`.
func Args(args ...string) MeshgateOption {
	return func(o *meshgateOpts) { o.args = append(o.args, args...) }
}

// Wrap runs the binary under a command (e.g. prlimit --nofile=300:300).
func Wrap(cmd ...string) MeshgateOption { return func(o *meshgateOpts) { o.wrap = cmd } }

// InDir writes the config (and the address file) into dir instead of a
// new temporary directory, so relative paths in it resolve there.
func InDir(dir string) MeshgateOption { return func(o *meshgateOpts) { o.dir = dir } }

// WaitReady makes StartMeshgate also wait (up to timeout) for /readyz 200.
func WaitReady(timeout time.Duration) MeshgateOption {
	return func(o *meshgateOpts) { o.ready = timeout }
}

// NoWait makes StartMeshgate return as soon as the process started (to
// signal it during start-up); call WaitStarted before using the addresses.
// A config with ListenerRef references cannot be started so.
func NoWait() MeshgateOption { return func(o *meshgateOpts) { o.noWait = true } }

// ListenerRef stands in a config for the bound address of the instance's
// own listener name (a self-loop upstream endpoint). StartMeshgate starts
// with every reference pointing at a closed port, reads the bound
// addresses back, then reloads the config with the references filled in.
func ListenerRef(name string) string { return "${listener:" + name + "}" }

var listenerRef = regexp.MustCompile(`\$\{listener:([^}]+)\}`)

// RefusedAddr is a loopback address nothing listens on (port 1: tcpmux,
// never served here): an upstream endpoint that is down. ListenerRef
// references point there until the addresses are known.
const RefusedAddr = "127.0.0.1:1"

// StartMeshgate writes cfg, runs the meshgate binary on it with
// -address-file and waits until every listener is up. A config without a
// top-level admin key gets admin on 127.0.0.1:0 (the product default is a
// fixed port). On test cleanup the process is stopped, and its output
// logged if the test failed.
func StartMeshgate(t testing.TB, cfg string, opts ...MeshgateOption) *Meshgate {
	t.Helper()
	o := meshgateOpts{}
	for _, f := range opts {
		f(&o)
	}
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	m := &Meshgate{t: t, Dir: o.dir, CfgPath: filepath.Join(o.dir, "meshgate.yaml"), addrFile: filepath.Join(o.dir, "meshgate-addrs.json")}
	cfg = withAdmin(cfg)
	refs := listenerRef.MatchString(cfg)
	m.write(listenerRef.ReplaceAllString(cfg, RefusedAddr))
	argv := append(slices.Clone(o.wrap), MeshgateBin(t), "run", "-c", m.CfgPath, "-address-file", m.addrFile)
	argv = append(argv, o.args...)
	m.Proc = Start(t, "meshgate", argv[0], argv[1:]...)
	if o.noWait {
		if refs {
			t.Fatal("StartMeshgate: NoWait with ListenerRef references")
		}
		return m
	}
	m.waitGeneration(1)
	if refs {
		m.Reload(cfg)
	}
	if o.ready > 0 {
		m.WaitReady(o.ready)
	}
	return m
}

// WaitStarted waits until every listener is up (after NoWait) and reads
// the addresses.
func (m *Meshgate) WaitStarted() {
	m.t.Helper()
	m.waitGeneration(1)
}

var adminKey = regexp.MustCompile(`(?m)^admin:`)

// withAdmin puts admin on port 0 unless cfg has an admin section.
func withAdmin(cfg string) string {
	if adminKey.MatchString(cfg) {
		return cfg
	}
	return "admin: {address: 127.0.0.1:0}\n" + cfg
}

// render fills in ListenerRef references with the bound addresses.
func (m *Meshgate) render(cfg string) string {
	m.t.Helper()
	return listenerRef.ReplaceAllStringFunc(cfg, func(ref string) string {
		return m.Addr(listenerRef.FindStringSubmatch(ref)[1])
	})
}

// write replaces the config file atomically (temp file + rename), so the
// config watcher never reads a partial file.
func (m *Meshgate) write(cfg string) {
	m.t.Helper()
	tmp := m.CfgPath + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o600); err != nil {
		m.t.Fatal(err)
	}
	if err := os.Rename(tmp, m.CfgPath); err != nil {
		m.t.Fatal(err)
	}
}

// WriteConfig replaces the config file (ListenerRef references filled in)
// without waiting for the outcome: for reloads a test expects rejected.
func (m *Meshgate) WriteConfig(cfg string) {
	m.t.Helper()
	m.write(m.render(withAdmin(cfg)))
}

// Reload replaces the config file, sends SIGHUP (the file watcher may not
// be watching yet right after start-up) and waits until meshgate applied
// the config (the address file's generation moved on), then refreshes the
// addresses.
func (m *Meshgate) Reload(cfg string) {
	m.t.Helper()
	if err := m.readAddrs(); err != nil { // reloads not made by Reload count too
		m.t.Fatal(err)
	}
	gen := m.bound().Generation
	m.WriteConfig(cfg)
	if err := m.Cmd.Process.Signal(syscall.SIGHUP); err != nil {
		m.t.Fatalf("SIGHUP %s: %v", m.Name, err)
	}
	m.waitGeneration(gen + 1)
}

// waitGeneration polls the address file until its generation is at least
// gen (or the process exits, or 20s pass).
func (m *Meshgate) waitGeneration(gen uint64) {
	m.t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		err := m.readAddrs()
		if err == nil && m.bound().Generation >= gen {
			return
		}
		if err == nil {
			err = fmt.Errorf("generation %d", m.bound().Generation)
		}
		select {
		case <-m.Done():
			m.t.Fatalf("%s exited while waiting for config generation %d: %v", m.Name, gen, m.err)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			m.t.Fatalf("%s: no address file of config generation %d within 20s: %v", m.Name, gen, err)
		}
	}
}

func (m *Meshgate) readAddrs() error {
	b, err := addrfile.Read(m.addrFile)
	if err != nil {
		return err
	}
	m.amu.Lock()
	m.addrs = b
	m.amu.Unlock()
	return nil
}

// bound is the last addresses read.
func (m *Meshgate) bound() BoundAddrs {
	m.amu.Lock()
	defer m.amu.Unlock()
	return m.addrs
}

// Addr is the bound host:port of listener name; the test fails if there is
// no such listener.
func (m *Meshgate) Addr(name string) string {
	m.t.Helper()
	ba := m.bound()
	a, ok := ba.Listeners[name]
	if !ok {
		m.t.Fatalf("%s has no listener %q (has %v)", m.Name, name, ba.Listeners)
	}
	return a
}

// Admin is the admin listener's host:port.
func (m *Meshgate) Admin() string { return m.bound().Admin }

// Health is admin.health_address's listener (empty when not configured).
func (m *Meshgate) Health() string { return m.bound().Health }

// XDS is the embedded xDS server's address (empty without an xds section).
func (m *Meshgate) XDS() string { return m.bound().XDS }

// AdminURL is "http://ADMIN" + path.
func (m *Meshgate) AdminURL(path string) string { return "http://" + m.bound().Admin + path }

// WaitReady waits up to timeout for /readyz to answer 200.
func (m *Meshgate) WaitReady(timeout time.Duration) {
	m.t.Helper()
	WaitHTTP200(m.t, timeout, m.AdminURL("/readyz"))
}

// Metrics GETs /metrics from the admin listener.
func (m *Meshgate) Metrics() (string, error) {
	code, body, err := HTTPGet(m.AdminURL("/metrics"))
	if err == nil && code != 200 {
		err = fmt.Errorf("/metrics: status %d: %s", code, strings.TrimSpace(body))
	}
	return body, err
}
