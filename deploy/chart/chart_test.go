package chart

import (
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"helm.sh/helm/v3/pkg/action"
	"helm.sh/helm/v3/pkg/chartutil"
	extensionsv1alpha1 "istio.io/api/extensions/v1alpha1"
	networkingv1 "istio.io/api/networking/v1"
	securityv1 "istio.io/api/security/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"sigs.k8s.io/yaml"

	"github.com/meshgate/meshgate/meshgate/config"
)

// cases: both modes, with the chart's defaults and with non-default values (ci/*.yaml, which
// `helm lint`/chart-testing also pick up).
var cases = []struct {
	name, values string
	mode         string
	kinds        []string // kinds that must be rendered
}{
	{"sidecar-defaults", "", "sidecar", []string{"ConfigMap", "Deployment", "DestinationRule", "PeerAuthentication", "PodDisruptionBudget", "Service", "ServiceAccount", "WasmPlugin"}},
	{"sidecar-custom", "ci/sidecar-custom-values.yaml", "sidecar", []string{"ConfigMap", "Deployment", "DestinationRule", "PeerAuthentication", "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceEntry", "ServiceMonitor", "WasmPlugin", "WorkloadEntry"}},
	{"bridge-defaults", "ci/bridge-minimal-values.yaml", "bridge", []string{"ConfigMap", "Deployment", "DestinationRule", "PodDisruptionBudget", "Service", "ServiceAccount"}},
	{"bridge-custom", "ci/bridge-values.yaml", "bridge", []string{"ConfigMap", "Deployment", "DestinationRule", "PodDisruptionBudget", "Service", "ServiceAccount", "ServiceEntry", "ServiceMonitor", "WorkloadEntry"}},
}

func values(t *testing.T, path string) map[string]any {
	t.Helper()
	if path == "" {
		return map[string]any{}
	}
	v, err := Values(path)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestLint runs Helm's linter (strict: warnings fail) with each values set.
func TestLint(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l := action.NewLint()
			l.Strict = true
			l.Namespace = "game"
			res := l.Run([]string{Dir()}, values(t, c.values))
			for _, m := range res.Messages {
				t.Logf("lint: %s", m)
			}
			if len(res.Errors) > 0 {
				t.Fatalf("helm lint: %v", errors.Join(res.Errors...))
			}
		})
	}
}

// TestRenderStrict renders both modes and decodes every object strictly into its type, then
// checks what the chart promises: hardened containers, probes on the health port, a preStop
// drain shorter than the grace period, typed Service ports, the Istio resources, and a
// MeshGate config that the product parses.
func TestRenderStrict(t *testing.T) {
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			vals := values(t, c.values)
			objs, err := Objects("mg", "game", vals)
			if err != nil {
				t.Fatal(err)
			}
			kinds := map[string]int{}
			for _, o := range objs {
				kinds[o.Kind]++
			}
			if got := slices.Sorted(maps.Keys(kinds)); !slices.Equal(got, c.kinds) {
				t.Fatalf("rendered kinds %v, want %v", got, c.kinds)
			}
			var cfg *config.Config
			var health string
			for _, o := range objs {
				if cm, ok := o.Value.(*corev1.ConfigMap); ok {
					cfg = parseConfig(t, cm.Data["meshgate.yaml"])
					var raw struct {
						Admin struct {
							HealthAddress string `json:"health_address"`
						} `json:"admin"`
					}
					if err := yaml.Unmarshal([]byte(cm.Data["meshgate.yaml"]), &raw); err != nil {
						t.Fatal(err)
					}
					health = raw.Admin.HealthAddress
				}
			}
			if cfg == nil {
				t.Fatal("no ConfigMap")
			}
			for _, o := range objs {
				switch v := o.Value.(type) {
				case *appsv1.Deployment:
					checkDeployment(t, c.mode, cfg, health, v)
				case *corev1.Service:
					checkService(t, c.mode, v)
				case *IstioResource:
					checkIstio(t, v)
				}
			}
		})
	}
}

// parseConfig parses the rendered config with the product's config package.
func parseConfig(t *testing.T, data string) *config.Config {
	t.Helper()
	cfg, err := config.Parse([]byte(data), t.TempDir())
	if err != nil {
		t.Fatalf("rendered MeshGate config does not parse: %v\n%s", err, data)
	}
	return cfg
}

func checkDeployment(t *testing.T, mode string, cfg *config.Config, healthAddress string, d *appsv1.Deployment) {
	t.Helper()
	p := d.Spec.Template.Spec
	if p.SecurityContext == nil || p.SecurityContext.RunAsNonRoot == nil || !*p.SecurityContext.RunAsNonRoot {
		t.Error("pod securityContext.runAsNonRoot not set")
	}
	hardened := append(slices.Clone(p.InitContainers), p.Containers...)
	var mg *corev1.Container
	names := []string{}
	for i := range hardened {
		c := &hardened[i]
		names = append(names, c.Name)
		if c.Name == "meshgate" {
			mg = c
		}
		if mode == "sidecar" && c.Name != "meshgate" {
			continue // the application container is the user's
		}
		sc := c.SecurityContext
		switch {
		case sc == nil:
			t.Errorf("container %s: no securityContext", c.Name)
		case sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot:
			t.Errorf("container %s: runAsNonRoot", c.Name)
		case sc.ReadOnlyRootFilesystem == nil || !*sc.ReadOnlyRootFilesystem:
			t.Errorf("container %s: readOnlyRootFilesystem", c.Name)
		case sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation:
			t.Errorf("container %s: allowPrivilegeEscalation", c.Name)
		case sc.Capabilities == nil || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}):
			t.Errorf("container %s: capabilities.drop must be [ALL]", c.Name)
		case sc.SeccompProfile == nil || sc.SeccompProfile.Type != corev1.SeccompProfileTypeRuntimeDefault:
			t.Errorf("container %s: seccompProfile RuntimeDefault", c.Name)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Limits.Memory().IsZero() {
			t.Errorf("container %s: resources requests.cpu and limits.memory required", c.Name)
		}
	}
	want := map[string][]string{"sidecar": {"legacy", "meshgate"}, "bridge": {"envoy-bootstrap", "meshgate", "envoy"}}[mode]
	if mode == "sidecar" && !slices.Contains(names, "legacy") {
		want = []string{names[0], "meshgate"} // app.name overridden
	}
	if !slices.Equal(names, want) {
		t.Errorf("containers %v, want %v", names, want)
	}
	if mg == nil {
		t.Fatal("no meshgate container")
	}
	health := ""
	for _, port := range mg.Ports {
		if port.Name == "http-health" {
			health = fmt.Sprint(port.ContainerPort)
		}
	}
	for probe, path := range map[*corev1.Probe]string{mg.ReadinessProbe: "/readyz", mg.LivenessProbe: "/healthz", mg.StartupProbe: "/healthz"} {
		if probe == nil || probe.HTTPGet == nil || probe.HTTPGet.Path != path || probe.HTTPGet.Port.String() != "http-health" {
			t.Errorf("meshgate probe for %s not on the health port: %+v", path, probe)
		}
	}
	if !strings.HasPrefix(healthAddress, "0.0.0.0:") || !strings.HasSuffix(healthAddress, ":"+health) {
		t.Errorf("admin.health_address %q does not match the container's health port %s", healthAddress, health)
	}
	if mg.Lifecycle == nil || mg.Lifecycle.PreStop == nil || mg.Lifecycle.PreStop.Sleep == nil {
		t.Fatal("meshgate: no preStop sleep")
	}
	preStop := time.Duration(mg.Lifecycle.PreStop.Sleep.Seconds) * time.Second
	grace := time.Duration(*p.TerminationGracePeriodSeconds) * time.Second
	if drain := cfg.Defaults.DrainTimeout; grace <= preStop+drain {
		t.Errorf("terminationGracePeriodSeconds %v must exceed preStop %v + drain_timeout %v", grace, preStop, drain)
	}
	if inject := d.Spec.Template.Labels["sidecar.istio.io/inject"]; (inject == "true") != (mode == "sidecar") {
		t.Errorf("sidecar.istio.io/inject=%q in %s mode", inject, mode)
	}
}

func checkService(t *testing.T, mode string, s *corev1.Service) {
	t.Helper()
	seen := map[string]bool{}
	for _, p := range s.Spec.Ports {
		if p.AppProtocol == nil {
			t.Errorf("service port %s: no appProtocol", p.Name)
			continue
		}
		want := map[string]string{"grpc": "grpc", "http": "http", "tcp": "tcp"}[strings.SplitN(p.Name, "-", 2)[0]]
		if *p.AppProtocol != want {
			t.Errorf("service port %s: appProtocol %q, want %q", p.Name, *p.AppProtocol, want)
		}
		seen[*p.AppProtocol] = true
	}
	if !seen["grpc"] || !seen["tcp"] {
		t.Errorf("%s service must carry a grpc and a tcp port: %v", mode, s.Spec.Ports)
	}
}

func checkIstio(t *testing.T, r *IstioResource) {
	t.Helper()
	switch s := r.Spec.(type) {
	case *extensionsv1alpha1.WasmPlugin:
		if s.GetType() != extensionsv1alpha1.PluginType_NETWORK || len(s.GetMatch()) == 0 || len(s.GetMatch()[0].GetPorts()) == 0 {
			t.Errorf("WasmPlugin %s: want type NETWORK on the private ports: %v", r.Meta.Name, s)
		}
		if s.GetSelector() == nil {
			t.Errorf("WasmPlugin %s: no workload selector", r.Meta.Name)
		}
		if sel := s.GetMatch()[0]; sel.GetMode().String() != "SERVER" || sel.GetPorts()[0].GetNumber() != 8000 {
			t.Errorf("WasmPlugin %s: want SERVER on the app's private port 8000: %v", r.Meta.Name, sel)
		}
	case *networkingv1.DestinationRule:
		if s.GetTrafficPolicy().GetLoadBalancer().GetConsistentHash().GetHttpHeaderName() != "x-mgp-uin" {
			t.Errorf("DestinationRule %s: want consistentHash on x-mgp-uin: %v", r.Meta.Name, s)
		}
	case *securityv1.PeerAuthentication:
		if s.GetMtls().GetMode() == securityv1.PeerAuthentication_MutualTLS_UNSET {
			t.Errorf("PeerAuthentication %s: no mode", r.Meta.Name)
		}
	case *networkingv1.ServiceEntry:
		if s.GetWorkloadSelector() == nil || s.GetResolution() != networkingv1.ServiceEntry_STATIC {
			t.Errorf("ServiceEntry %s: want STATIC with a workloadSelector: %v", r.Meta.Name, s)
		}
	case *networkingv1.WorkloadEntry:
		if s.GetAddress() == "" || s.GetLabels()["meshgate.io/legacy-backend"] == "" {
			t.Errorf("WorkloadEntry %s: address and backend label required: %v", r.Meta.Name, s)
		}
	default:
		t.Errorf("unexpected Istio resource %T", proto.Message(s))
	}
}

// TestPeerAuthenticationMode: the default sidecar render has STRICT mTLS; the custom one follows
// the values.
func TestPeerAuthenticationMode(t *testing.T) {
	for _, c := range []struct {
		values string
		want   securityv1.PeerAuthentication_MutualTLS_Mode
	}{{"", securityv1.PeerAuthentication_MutualTLS_STRICT}, {"ci/sidecar-custom-values.yaml", securityv1.PeerAuthentication_MutualTLS_PERMISSIVE}} {
		objs, err := Objects("mg", "game", values(t, c.values))
		if err != nil {
			t.Fatal(err)
		}
		for _, o := range objs {
			if r, ok := o.Value.(*IstioResource); ok {
				if pa, ok := r.Spec.(*securityv1.PeerAuthentication); ok && pa.GetMtls().GetMode() != c.want {
					t.Errorf("values %q: PeerAuthentication mode %v, want %v", c.values, pa.GetMtls().GetMode(), c.want)
				}
			}
		}
	}
}

// TestStrictDecodeRejectsMisspelling proves the decoders are strict: a misspelt field in a
// Kubernetes object, in an Istio spec, or a duplicate key fails.
func TestStrictDecodeRejectsMisspelling(t *testing.T) {
	out, err := Render("mg", "game", map[string]any{})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ file, from, to string }{
		{"meshgate/templates/deployment.yaml", "terminationGracePeriodSeconds:", "terminationGracePeriodSecond:"},
		{"meshgate/templates/deployment.yaml", "readOnlyRootFilesystem:", "readOnlyRootFileSystem:"},
		{"meshgate/templates/istio-destinationrules.yaml", "httpHeaderName:", "httpHeadername:"},
		{"meshgate/templates/istio-wasmplugin.yaml", "failStrategy:", "failstrategy2:"},
		{"meshgate/templates/istio-peerauthentication.yaml", "mode: STRICT", "mode: STRICTEST"},
	} {
		file, from, to := c.file, c.from, c.to
		m, ok := out[file]
		if !ok || !strings.Contains(m, from) {
			t.Fatalf("%s has no %q", file, from)
		}
		docs := Split(strings.Replace(m, from, to, 1))
		var errs []error
		for _, d := range docs {
			if _, _, err := Decode(d); err != nil {
				errs = append(errs, err)
			}
		}
		if len(errs) == 0 || !errors.Is(errs[0], ErrDecode) {
			t.Errorf("%s with %q -> %q decoded without error", file, from, to)
		} else {
			t.Logf("%s: %v", to, errs[0])
		}
	}
}

// TestBadValuesRejected: values the chart cannot honour, or misspelt ones, fail the render
// naming the value (values.schema.json, then the chart's own checks).
func TestBadValuesRejected(t *testing.T) {
	for _, c := range []struct {
		vals map[string]any
		want string
	}{
		{map[string]any{"drain": map[string]any{"preStopSeconds": 5, "timeoutSeconds": 30, "terminationGracePeriodSeconds": 35}}, "drain.terminationGracePeriodSeconds"},
		{map[string]any{"mode": "daemon"}, "at '/mode': value must be one of 'sidecar', 'bridge'"},
		// values.schema.json: a misspelt or mistyped value fails naming its path.
		{map[string]any{"drian": map[string]any{}}, "additional properties 'drian' not allowed"},
		{map[string]any{"istio": map[string]any{"wasmPlugin": map[string]any{"prots": []any{8000}}}}, "at '/istio/wasmPlugin': additional properties 'prots' not allowed"},
		{map[string]any{"image": map[string]any{"digest": "latest"}}, "at '/image/digest'"},
		{map[string]any{"istio": map[string]any{"wasmPlugin": map[string]any{"pluginConfig": map[string]any{"deny_cmd": []any{9}}}}}, "additional properties 'deny_cmd' not allowed"},
		{map[string]any{"ports": map[string]any{"health": 70000}}, "at '/ports/health'"},
		{map[string]any{"mode": "bridge"}, "config.xds: required in bridge mode"},
	} {
		_, err := Render("mg", "game", c.vals)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("values %v: error %v, want one naming %q", c.vals, err, c.want)
		}
	}
}

// TestChartMetadata: the chart directory is valid for Helm.
func TestChartMetadata(t *testing.T) {
	if ok, err := chartutil.IsChartDir(Dir()); !ok {
		t.Fatalf("%s is not a chart directory: %v", Dir(), err)
	}
}

// TestConfigChangeReloadsInPlace: by default a config change only changes the ConfigMap (the
// pod template is identical, MeshGate reloads the file); rollOnConfigChange rolls the pods.
func TestConfigChangeReloadsInPlace(t *testing.T) {
	template := func(vals map[string]any) string {
		t.Helper()
		out, err := Render("mg", "game", vals)
		if err != nil {
			t.Fatal(err)
		}
		return out["meshgate/templates/deployment.yaml"]
	}
	timeout := func(roll bool, d string) map[string]any {
		v := values(t, "values.yaml")
		v["rollOnConfigChange"] = roll
		v["config"].(map[string]any)["defaults"].(map[string]any)["timeout"] = d
		return v
	}
	if a, b := template(timeout(false, "3s")), template(timeout(false, "4s")); a != b {
		t.Error("a config change altered the pod template with rollOnConfigChange=false")
	}
	if a, b := template(timeout(true, "3s")), template(timeout(true, "4s")); a == b || !strings.Contains(a, "meshgate.io/config-checksum") {
		t.Error("rollOnConfigChange=true: the pod template does not follow the config")
	}
}
