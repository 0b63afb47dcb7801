package docker

import (
	"net"
	"strconv"
	"testing"

	"github.com/meshgate/meshgate/meshgate/config"
)

// TestSidecarProbesReachHealthListener: in k8s/sidecar.yaml the kubelet
// probes, the meshgate container's ports and the Prometheus scrape
// annotation point at admin.health_address, which binds beyond loopback
// (kubelet and Prometheus connect to the pod IP), while admin.address
// (/config, pprof) stays on loopback.
func TestSidecarProbesReachHealthListener(t *testing.T) {
	type probe struct {
		HTTPGet struct {
			Path string `yaml:"path"`
			Port int    `yaml:"port"`
		} `yaml:"httpGet"`
	}
	type container struct {
		Name  string `yaml:"name"`
		Ports []struct {
			ContainerPort int `yaml:"containerPort"`
		} `yaml:"ports"`
		ReadinessProbe *probe `yaml:"readinessProbe"`
		LivenessProbe  *probe `yaml:"livenessProbe"`
	}
	type document struct {
		Kind string            `yaml:"kind"`
		Data map[string]string `yaml:"data"`
		Spec struct {
			Template struct {
				Metadata struct {
					Annotations map[string]string `yaml:"annotations"`
				} `yaml:"metadata"`
				Spec struct {
					Containers []container `yaml:"containers"`
				} `yaml:"spec"`
			} `yaml:"template"`
		} `yaml:"spec"`
	}
	var cfg *config.Config
	var mg *container
	var annotations map[string]string
	for _, doc := range yamlDocs[document](t, "k8s/sidecar.yaml") {
		switch doc.Kind {
		case "ConfigMap":
			var err error
			if cfg, err = config.Parse([]byte(doc.Data["meshgate.yaml"]), "."); err != nil {
				t.Fatal(err)
			}
		case "Deployment":
			annotations = doc.Spec.Template.Metadata.Annotations
			for i := range doc.Spec.Template.Spec.Containers {
				if c := doc.Spec.Template.Spec.Containers[i]; c.Name == "meshgate" {
					mg = &c
				}
			}
		}
	}
	if cfg == nil || mg == nil {
		t.Fatal("sidecar.yaml: meshgate ConfigMap or container missing")
	}
	if !cfg.Admin.IsLoopback() {
		t.Errorf("admin.address %s must stay on loopback", cfg.Admin.Address)
	}
	host, port, err := net.SplitHostPort(cfg.Admin.HealthAddress)
	if err != nil {
		t.Fatalf("admin.health_address %q: %v", cfg.Admin.HealthAddress, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("admin.health_address %s is loopback: kubelet and Prometheus cannot reach it", cfg.Admin.HealthAddress)
	}
	hp, _ := strconv.Atoi(port)
	for name, p := range map[string]*probe{"readinessProbe": mg.ReadinessProbe, "livenessProbe": mg.LivenessProbe} {
		if p == nil {
			t.Errorf("%s missing", name)
			continue
		}
		if p.HTTPGet.Port != hp {
			t.Errorf("%s port %d, want health port %d", name, p.HTTPGet.Port, hp)
		}
	}
	if got := annotations["prometheus.io/port"]; got != port {
		t.Errorf("prometheus.io/port %q, want health port %s", got, port)
	}
	exposed := false
	for _, p := range mg.Ports {
		exposed = exposed || p.ContainerPort == hp
		if _, ap, _ := net.SplitHostPort(cfg.Admin.Address); strconv.Itoa(p.ContainerPort) == ap {
			t.Errorf("containerPort %d is the loopback admin port", p.ContainerPort)
		}
	}
	if !exposed {
		t.Errorf("health port %d not among the meshgate container's ports", hp)
	}
}
