package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"

	"github.com/meshgate/meshgate/deploy/chart"
)

// TestBridgeBootstrap: in bridge mode the chart's init container runs the real meshgate binary
// with its rendered arguments on the rendered config, and the Envoy bootstrap it writes passes
// `envoy --mode validate` with the arguments of the chart's Envoy container.
func TestBridgeBootstrap(t *testing.T) {
	envoyBin := need(t, "ENVOY_BIN", "Envoy 1.40")
	mgBin := need(t, "MESHGATE_BIN", "the meshgate binary")
	vals, err := chart.Values("ci/bridge-values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	objs, err := chart.Objects("bridge", ns, vals)
	if err != nil {
		t.Fatal(err)
	}
	var cm *corev1.ConfigMap
	var dep *appsv1.Deployment
	for _, o := range objs {
		switch v := o.Value.(type) {
		case *corev1.ConfigMap:
			cm = v
		case *appsv1.Deployment:
			dep = v
		}
	}
	if cm == nil || dep == nil || len(dep.Spec.Template.Spec.InitContainers) != 1 {
		t.Fatal("bridge render lacks the ConfigMap, the Deployment or its init container")
	}
	dir := t.TempDir()
	cfgPath, bootPath := filepath.Join(dir, "meshgate.yaml"), filepath.Join(dir, "bootstrap.yaml")
	// The pod's paths, mapped into the temporary directory.
	mapPath := strings.NewReplacer("/etc/meshgate/config/meshgate.yaml", cfgPath, "/etc/envoy/bootstrap.yaml", bootPath)
	initArgs := dep.Spec.Template.Spec.InitContainers[0].Args
	var args []string
	for _, a := range initArgs {
		args = append(args, mapPath.Replace(a))
	}
	if err := os.WriteFile(cfgPath, []byte(cm.Data["meshgate.yaml"]), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(mgBin, args...).CombinedOutput(); err != nil {
		t.Fatal(&cmdError{args: initArgs, out: string(out)})
	}
	var envoyArgs []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "envoy" {
			envoyArgs = c.Args
		}
	}
	if len(envoyArgs) == 0 {
		t.Fatal("no envoy container")
	}
	validate := []string{"--mode", "validate"}
	for _, a := range envoyArgs {
		validate = append(validate, mapPath.Replace(a))
	}
	if out, err := exec.Command(envoyBin, validate...).CombinedOutput(); err != nil {
		b, _ := os.ReadFile(bootPath)
		t.Fatalf("envoy %v: %v\n%s\nbootstrap:\n%s", validate, err, out, b)
	}
}

type cmdError struct {
	args []string
	out  string
}

func (e *cmdError) Error() string { return "meshgate " + strings.Join(e.args, " ") + ": " + e.out }
