package runtime

import (
	"fmt"

	"go.yaml.in/yaml/v3"

	"github.com/meshgate/meshgate/codec"
	"github.com/meshgate/meshgate/codec/fixed"
	"github.com/meshgate/meshgate/meshgate/config"
)

// codecSet resolves codec names: the config's declarative codecs
// (codec/fixed, built per config so a reload can change them) first, then
// the global registry: "mgp" and any codec a program registers from Go with
// codec.Register (docs/codecs.md).
type codecSet map[string]*fixed.Codec

// buildCodecs builds cfg.Codecs; errors name the field.
func buildCodecs(cfg *config.Config) (codecSet, error) {
	set := codecSet{}
	for i, cs := range cfg.Codecs {
		var c *fixed.Codec
		var err error
		if cs.File != "" {
			c, err = fixed.Load(cfg.Path(cs.File), 0)
		} else {
			c, err = fixed.FromNode(&cs.Spec, 0)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: codecs[%d]: %w", config.ErrInvalid, i, err)
		}
		set[cs.Name] = c
	}
	return set, nil
}

// get returns the named codec with the frame limit (0 = default).
func (s codecSet) get(name string, maxFrameSize int) (codec.Codec, error) {
	if c := s[name]; c != nil {
		return c.With(name, maxFrameSize), nil
	}
	return codec.New(name, maxFrameSize)
}

// codecChanged reports whether a declarative codec used by name differs
// from the running config's (so pools speaking it must be rebuilt).
func (st *staged) codecChanged(name string) bool {
	_, declared := st.codecs[name]
	return declared && st.codecsChanged[name]
}

// changedCodecs names the declarative codecs of cfg that are new or differ
// from old's (by file path or inline description).
func changedCodecs(old, cfg *config.Config) map[string]bool {
	prev := map[string]config.CodecSpec{}
	if old != nil {
		for _, cs := range old.Codecs {
			prev[cs.Name] = cs
		}
	}
	out := map[string]bool{}
	for _, cs := range cfg.Codecs {
		o, ok := prev[cs.Name]
		out[cs.Name] = !ok || o.File != cs.File || specText(&o.Spec) != specText(&cs.Spec)
	}
	return out
}

func specText(n *yaml.Node) string {
	if n.Kind == 0 {
		return ""
	}
	b, _ := yaml.Marshal(n)
	return string(b)
}
