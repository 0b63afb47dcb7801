package chart

import (
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"helm.sh/helm/v3/pkg/chart/loader"
	"helm.sh/helm/v3/pkg/chartutil"
	"helm.sh/helm/v3/pkg/engine"
)

// Dir is the chart's directory.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "helm", "meshgate")
}

// Values reads a values file (relative paths are resolved against the chart directory).
func Values(path string) (map[string]any, error) {
	if !filepath.IsAbs(path) {
		path = filepath.Join(Dir(), path)
	}
	v, err := chartutil.ReadValuesFile(path)
	if err != nil {
		return nil, fmt.Errorf("chart: values %s: %w", path, err)
	}
	return v.AsMap(), nil
}

// Render renders the chart with vals as release name/namespace, the way `helm template`
// does, and returns the non-empty manifests by template path.
func Render(name, namespace string, vals map[string]any) (map[string]string, error) {
	ch, err := loader.Load(Dir())
	if err != nil {
		return nil, fmt.Errorf("chart: load: %w", err)
	}
	caps := chartutil.DefaultCapabilities.Copy()
	if err := chartutil.ProcessDependenciesWithMerge(ch, vals); err != nil {
		return nil, fmt.Errorf("chart: dependencies: %w", err)
	}
	rv, err := chartutil.ToRenderValues(ch, vals, chartutil.ReleaseOptions{Name: name, Namespace: namespace, IsInstall: true, Revision: 1}, caps)
	if err != nil {
		return nil, fmt.Errorf("chart: values: %w", err)
	}
	out, err := engine.Render(ch, rv)
	if err != nil {
		return nil, fmt.Errorf("chart: render: %w", err)
	}
	for k, v := range out {
		if strings.HasSuffix(k, "NOTES.txt") || strings.TrimSpace(stripComments(v)) == "" {
			delete(out, k)
		}
	}
	return out, nil
}

// Objects renders the chart and decodes every object strictly.
func Objects(name, namespace string, vals map[string]any) ([]Object, error) {
	out, err := Render(name, namespace, vals)
	if err != nil {
		return nil, err
	}
	files := make([]string, 0, len(out))
	for k := range out {
		files = append(files, k)
	}
	sort.Strings(files)
	var objs []Object
	for _, f := range files {
		for i, doc := range Split(out[f]) {
			v, tm, err := Decode(doc)
			if err != nil {
				return nil, fmt.Errorf("%s document %d: %w", f, i, err)
			}
			objs = append(objs, Object{Source: f, Kind: tm.Kind, Name: nameOf(v), Value: v})
		}
	}
	return objs, nil
}

func nameOf(v any) string {
	switch o := v.(type) {
	case *IstioResource:
		return o.Meta.Name
	case interface{ GetName() string }:
		return o.GetName()
	}
	return ""
}
