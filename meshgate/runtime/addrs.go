package runtime

// BoundAddrs is every address a running instance listens on, as bound (a
// configured port 0 shows the port the kernel chose). `meshgate run
// -address-file` writes it as JSON once everything is up and again after
// each applied reload, so a supervisor or a test can use port 0 and never
// race another process for a port.
type BoundAddrs struct {
	// Generation is the served config's generation (1 at start, +1 per
	// applied reload; the meshgate_config_generation metric).
	Generation uint64 `json:"generation"`
	// Listeners maps each listener's name to its bound host:port.
	Listeners map[string]string `json:"listeners"`
	// Admin is the admin listener (empty with Options.NoAdmin).
	Admin string `json:"admin,omitempty"`
	// Health is admin.health_address's listener, when configured.
	Health string `json:"health,omitempty"`
	// XDS is the embedded xDS server's address (host:port or the unix
	// socket path), when the config has an xds section.
	XDS string `json:"xds,omitempty"`
}

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
