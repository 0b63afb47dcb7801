package runtime

import (
	"fmt"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/meshgate/transcode"
)

// stageDescriptors loads every listener's reflection descriptor sets; an
// unreadable or unlinkable set rejects the config naming the file's field.
func stageDescriptors(cfg *config.Config) (map[string]*descset.Set, error) {
	sets := map[string]*descset.Set{}
	for i := range cfg.Listeners {
		l := &cfg.Listeners[i]
		if l.Reflection == nil {
			continue
		}
		paths := make([]string, len(l.Reflection.DescriptorSets))
		for j, p := range l.Reflection.DescriptorSets {
			paths[j] = cfg.Path(p)
			if _, err := descset.Load(paths[j]); err != nil {
				return nil, fmt.Errorf("%w: listeners[%d].reflection.descriptor_sets[%d]: %w", config.ErrInvalid, i, j, err)
			}
		}
		s, err := descset.Load(paths...)
		if err != nil {
			return nil, fmt.Errorf("%w: listeners[%d].reflection.descriptor_sets: %w", config.ErrInvalid, i, err)
		}
		sets[l.Name] = s
	}
	return sets, nil
}

// commitDescriptors points each grpc listener's reflection service at its
// descriptor sets and routed methods.
func (r *Runtime) commitDescriptors(sets map[string]*descset.Set) {
	for name, l := range r.listeners {
		if l.refl == nil {
			continue
		}
		methods := make([]string, len(l.cfg.Routes))
		for i, rt := range l.cfg.Routes {
			methods[i] = rt.Method
		}
		l.refl.Update(sets[name], methods)
	}
}

// attachBodies builds the body transcoders of private listener l's routes
// (index i in the config) from its descriptor sets.
func attachBodies(tbl *inbound.Table, l *config.Listener, i int, set *descset.Set) error {
	return tbl.AttachBodies(l, func(j int, b *config.Body) (*transcode.Codec, error) {
		bc, err := transcode.New(set, b)
		if err != nil {
			return nil, fmt.Errorf("%w: listeners[%d].routes[%d].body: %w", config.ErrInvalid, i, j, err)
		}
		return bc, nil
	})
}
