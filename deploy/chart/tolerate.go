package chart

import (
	"fmt"
	"strings"

	"sigs.k8s.io/yaml"
)

// Tolerated are the MeshGate config fields that the chart renders and that other branches add
// to the product (admin.health_address, admin.pprof, xds.tls, xds.insecure), by section.
// While the product's config package does not know them, Tolerate removes them; once it does,
// they are parsed like every other field.
var Tolerated = map[string]string{"health_address": "admin", "pprof": "admin", "tls": "xds", "insecure": "xds"}

// Tolerate calls try with the rendered config; when try fails only because a Tolerated field
// is unknown ("field X not found"), it removes that field and tries again. It returns the
// removed fields ("admin.health_address") and try's last error.
func Tolerate(config string, try func([]byte) error) ([]string, error) {
	var m map[string]any
	if err := yaml.Unmarshal([]byte(config), &m); err != nil {
		return nil, fmt.Errorf("chart: config: %w", err)
	}
	var removed []string
	for {
		b, err := yaml.Marshal(m)
		if err != nil {
			return removed, fmt.Errorf("chart: config: %w", err)
		}
		err = try(b)
		if err == nil {
			return removed, nil
		}
		stripped := false
		for field, section := range Tolerated {
			if !strings.Contains(err.Error(), fmt.Sprintf("field %s not found", field)) {
				continue
			}
			if sec, ok := m[section].(map[string]any); ok {
				if _, ok := sec[field]; ok {
					delete(sec, field)
					removed = append(removed, section+"."+field)
					stripped = true
				}
			}
		}
		if !stripped {
			return removed, err
		}
	}
}
