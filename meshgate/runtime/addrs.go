package runtime

import "github.com/meshgate/meshgate/meshgate/addrfile"

// BoundAddrs is every address a running instance listens on, as bound:
// the document `meshgate run -address-file` writes once everything is up
// and again after each applied reload (package addrfile).
type BoundAddrs = addrfile.Addrs

// BoundAddrs returns the addresses the runtime listens on now.
func (r *Runtime) BoundAddrs() BoundAddrs {
	b := BoundAddrs{Listeners: map[string]string{}}
	r.mu.Lock()
	for name, l := range r.listeners {
		b.Listeners[name] = l.sock.raw.Addr().String()
	}
	r.mu.Unlock()
	b.Generation = r.status.view().Generation
	if a := r.admin.Addr(); a != nil {
		b.Admin = a.String()
	}
	if a := r.admin.HealthAddr(); a != nil {
		b.Health = a.String()
	}
	if x := r.XDS(); x != nil {
		if a := x.Addr(); a != nil {
			b.XDS = a.String()
		}
	}
	return b
}
