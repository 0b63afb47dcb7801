package runtime

import (
	"fmt"
	"strings"
	"sync"

	"github.com/meshgate/meshgate/meshgate/config"
	"github.com/meshgate/meshgate/meshgate/descset"
	"github.com/meshgate/meshgate/meshgate/inbound"
	"github.com/meshgate/meshgate/meshgate/transcode"
)

// descCache holds the descriptor sets of the running and the staged
// config, keyed by the listener's descriptor_sets list, so that a grpc
// listener's bridge resolves body types of whichever generation it is
// (re)built for, including when a failed reload restores the old routes.
type descCache struct {
	mu   sync.Mutex
	sets map[string]*descset.Set
}

func descKey(l *config.Listener) string {
	if l.Reflection == nil {
		return ""
	}
	return strings.Join(l.Reflection.DescriptorSets, "\x00")
}

// get returns the sets of listener l (nil when it has none).
func (d *descCache) get(l *config.Listener) *descset.Set {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.sets[descKey(l)]
}

// add remembers staged sets by listener.
func (d *descCache) add(cfg *config.Config, sets map[string]*descset.Set) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.sets == nil {
		d.sets = map[string]*descset.Set{}
	}
	for i := range cfg.Listeners {
		if s := sets[cfg.Listeners[i].Name]; s != nil {
			d.sets[descKey(&cfg.Listeners[i])] = s
		}
	}
}

// prune keeps only the sets cfg uses.
func (d *descCache) prune(cfg *config.Config) {
	d.mu.Lock()
	defer d.mu.Unlock()
	keep := map[string]bool{}
	for i := range cfg.Listeners {
		keep[descKey(&cfg.Listeners[i])] = true
	}
	for k := range d.sets {
		if !keep[k] {
			delete(d.sets, k)
		}
	}
}

// stageDescriptors loads every listener's reflection descriptor sets; an
// unreadable or unlinkable set rejects the config naming the file's field.
func (r *Runtime) stageDescriptors(cfg *config.Config) (map[string]*descset.Set, error) {
	sets, err := loadDescriptors(cfg)
	if err == nil {
		r.descs.add(cfg, sets)
	}
	return sets, err
}

func loadDescriptors(cfg *config.Config) (map[string]*descset.Set, error) {
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
func (r *Runtime) commitDescriptors(cfg *config.Config, sets map[string]*descset.Set) {
	r.descs.prune(cfg)
	for name, l := range r.listeners {
		g, ok := l.srv.(*grpcServer)
		if !ok || g.refl == nil {
			continue
		}
		methods := make([]string, len(l.cfg.Routes))
		for i, rt := range l.cfg.Routes {
			methods[i] = rt.Method
		}
		g.refl.Update(sets[name], methods)
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
