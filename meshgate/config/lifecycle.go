package config

import (
	"encoding"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// unknownFields reports every mapping key in the document that no field of
// Config (at that position) accepts, by YAML path and line, e.g.
// "listeners[0].adress: unknown field (line 7)". yaml's own KnownFields
// error names only the line and the Go type.
func unknownFields(data []byte) error {
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return nil // the decoder reports syntax errors
	}
	var e errs
	walkKnown(&e, &doc, reflect.TypeFor[Config](), "")
	if len(e) == 0 {
		return nil
	}
	return joinErrs(e)
}

var (
	yamlNodeType    = reflect.TypeFor[yaml.Node]()
	yamlUnmarshaler = reflect.TypeFor[yaml.Unmarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

func walkKnown(e *errs, n *yaml.Node, t reflect.Type, path string) {
	for n.Kind == yaml.DocumentNode && len(n.Content) == 1 {
		n = n.Content[0]
	}
	if n.Kind == yaml.AliasNode && n.Alias != nil {
		n = n.Alias
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == yamlNodeType || reflect.PointerTo(t).Implements(yamlUnmarshaler) || reflect.PointerTo(t).Implements(textUnmarshaler) {
		return
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return
		}
		fields := map[string]reflect.Type{}
		yamlFields(t, fields)
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			if k.Value == "<<" {
				walkKnown(e, v, t, path)
				continue
			}
			p := joinPath(path, k.Value)
			ft, ok := fields[k.Value]
			if !ok {
				e.add(p, "unknown field (line %d)", k.Line)
				continue
			}
			walkKnown(e, v, ft, p)
		}
	case reflect.Slice, reflect.Array:
		if n.Kind != yaml.SequenceNode {
			return
		}
		for i, c := range n.Content {
			walkKnown(e, c, t.Elem(), fmt.Sprintf("%s[%d]", path, i))
		}
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			walkKnown(e, n.Content[i+1], t.Elem(), joinPath(path, n.Content[i].Value))
		}
	}
}

// yamlFields maps the YAML keys of struct t to their types (",inline"
// fields contribute their own keys).
func yamlFields(t reflect.Type, out map[string]reflect.Type) {
	for i := range t.NumField() {
		sf := t.Field(i)
		name, inline, ok := fieldTag(sf, "yaml", strings.ToLower(sf.Name), "inline")
		if !ok {
			continue
		}
		if inline {
			ft := sf.Type
			for ft.Kind() == reflect.Pointer {
				ft = ft.Elem()
			}
			if ft.Kind() == reflect.Struct {
				yamlFields(ft, out)
			}
			continue
		}
		out[name] = sf.Type
	}
}

func joinPath(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// View returns c as a JSON-ready value for the admin /config page: the
// json field names and omissions (secrets carry json:"-") of the config
// types, with durations as Go duration strings ("30s") instead of
// nanosecond integers.
func (c *Config) View() any { return jsonView(reflect.ValueOf(c)) }

var (
	durationType      = reflect.TypeFor[time.Duration]()
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
)

func jsonView(v reflect.Value) any {
	if !v.IsValid() {
		return nil
	}
	if v.Type() == durationType {
		return time.Duration(v.Int()).String()
	}
	if v.Type().Implements(jsonMarshalerType) {
		return v.Interface()
	}
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if v.IsNil() {
			return nil
		}
		return jsonView(v.Elem())
	case reflect.Struct:
		out := map[string]any{}
		t := v.Type()
		for i := range t.NumField() {
			sf := t.Field(i)
			name, omitEmpty, ok := fieldTag(sf, "json", sf.Name, "omitempty")
			if !ok {
				continue
			}
			fv := v.Field(i)
			if inlined(sf) {
				// An embedded struct without a json name is flattened
				// into its parent, as encoding/json (and yaml ",inline")
				// does: its fields are the route's or listener's own.
				if m, ok := jsonView(fv).(map[string]any); ok {
					for k, x := range m {
						if _, taken := out[k]; !taken {
							out[k] = x
						}
					}
				}
				continue
			}
			if omitEmpty && (fv.IsZero() || ((fv.Kind() == reflect.Slice || fv.Kind() == reflect.Map) && fv.Len() == 0)) {
				continue
			}
			out[name] = jsonView(fv)
		}
		return out
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.IsNil() {
			return nil
		}
		if v.Type().Elem().Kind() == reflect.Uint8 {
			return v.Interface()
		}
		out := make([]any, v.Len())
		for i := range out {
			out[i] = jsonView(v.Index(i))
		}
		return out
	case reflect.Map:
		if v.IsNil() {
			return nil
		}
		out := make(map[string]any, v.Len())
		for it := v.MapRange(); it.Next(); {
			out[fmt.Sprint(it.Key().Interface())] = jsonView(it.Value())
		}
		return out
	}
	return v.Interface()
}

// Readiness modes (Config.Readiness): what /readyz waits for from the
// upstreams, beyond every listener being bound.
const (
	ReadinessAll  = "all"  // every upstream has a ready connection (default)
	ReadinessAny  = "any"  // at least one upstream has
	ReadinessNone = "none" // upstreams are not checked
)

// Lifecycle defaults.
const (
	// DefaultReconnectBackoffMax caps a grpc upstream's reconnect backoff
	// (grpc-go's own default grows to 120s).
	DefaultReconnectBackoffMax = 5 * time.Second
	// DefaultDrainGrace is how long a gRPC listener keeps accepting (and
	// serving, with its health service NOT_SERVING) after SIGTERM before it
	// sends GOAWAY and stops accepting, so clients that have not yet seen
	// the endpoint leave get no "connection refused". The default is
	// min(2s, drain_timeout/2); a negative drain_grace disables it.
	DefaultDrainGrace = 2 * time.Second
)

func (c *Config) applyLifecycleDefaults() {
	setDefault(&c.Readiness, ReadinessAll)
	setDefault(&c.Defaults.DrainGrace, min(DefaultDrainGrace, c.Defaults.DrainTimeout/2))
	for i := range c.Upstreams {
		u := &c.Upstreams[i]
		if u.Protocol == ProtoGRPC && u.ReconnectBackoffMax == 0 {
			u.ReconnectBackoffMax = DefaultReconnectBackoffMax
		}
	}
}

func (c *Config) validateLifecycle(e *errs) {
	checkOneOf(e, "readiness", c.Readiness, ReadinessAll, ReadinessAny, ReadinessNone)
	if g := c.Defaults.DrainGrace; g > c.Defaults.DrainTimeout {
		e.add("defaults.drain_grace", "must not exceed drain_timeout (%s), got %s", c.Defaults.DrainTimeout, g)
	}
	for i, u := range c.Upstreams {
		f := fmt.Sprintf("upstreams[%d].reconnect_backoff_max", i)
		switch {
		case u.Protocol != ProtoGRPC && u.ReconnectBackoffMax != 0:
			e.add(f, "only for protocol grpc")
		case u.ReconnectBackoffMax < 0 || u.ReconnectBackoffMax > 10*time.Minute:
			e.add(f, "must be in (0, 10m], got %s", u.ReconnectBackoffMax)
		}
		f = fmt.Sprintf("upstreams[%d].write_timeout", i)
		switch {
		case u.Protocol != ProtoPrivate && u.WriteTimeout != 0:
			e.add(f, "only for protocol private")
		case u.WriteTimeout < 0 || u.WriteTimeout > 10*time.Minute:
			e.add(f, "must be in (0, 10m], got %s", u.WriteTimeout)
		}
	}
}

// fieldTag reads struct field sf's key tag ("yaml", "json"): the field's
// name (def when the tag names none) and whether option opt is set; ok is
// false for an unexported field or a "-" tag.
// inlined reports whether sf is an embedded struct (or pointer to one)
// with no json name of its own, which jsonView flattens into its parent.
func inlined(sf reflect.StructField) bool {
	if !sf.Anonymous {
		return false
	}
	if name, _, _ := strings.Cut(sf.Tag.Get("json"), ","); name != "" {
		return false
	}
	t := sf.Type
	if t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	return t.Kind() == reflect.Struct
}

func fieldTag(sf reflect.StructField, key, def, opt string) (name string, hasOpt, ok bool) {
	tag := sf.Tag.Get(key)
	if !sf.IsExported() || tag == "-" {
		return "", false, false
	}
	name, opts, _ := strings.Cut(tag, ",")
	if name == "" {
		name = def
	}
	return name, strings.Contains(","+opts+",", ","+opt+","), true
}
