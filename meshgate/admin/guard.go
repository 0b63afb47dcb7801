package admin

import (
	"net"
	"net/http"
	"strings"
	"time"
)

// What the admin listener checks before any handler runs (the health
// listener serves only GETs of /healthz, /readyz and /metrics and needs
// none of it):
//
//   - Browser requests: a cross-origin request that changes state (POST,
//     PUT, DELETE from a page the operator has open) is refused 403 by
//     net/http's CrossOriginProtection (Sec-Fetch-Site, else Origin vs
//     Host). curl and other non-browser clients send neither header and
//     pass.
//   - DNS rebinding: while the admin address is loopback, the Host header
//     must be an IP literal or localhost (a page of a rebound name reaches
//     127.0.0.1 with its own name as Host, and would otherwise read
//     /config and /metrics as same-origin); others get 421.
//   - Request bodies: a request with a body must send it within
//     BodyTimeout, or its connection is closed (ReadHeaderTimeout bounds
//     the headers; a server-wide ReadTimeout would also cancel a pprof
//     profile that streams for longer).
//   - Mutations of handlers added with WithHandler (the service switches):
//     like the /migrate ones, only from loopback peers, or with the bearer
//     token of migrate.token from others.

// BodyTimeout bounds reading a request body on the admin listener.
var BodyTimeout = 10 * time.Second

// guard wraps the admin mux (see above).
func (s *Server) guard(h http.Handler) http.Handler {
	cop := http.NewCrossOriginProtection()
	h = cop.Handler(h)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.loopbackOnly && !literalHost(r.Host) {
			http.Error(w, "admin: Host must be an IP address or localhost", http.StatusMisdirectedRequest)
			return
		}
		if r.ContentLength != 0 {
			_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(BodyTimeout))
		}
		h.ServeHTTP(w, r)
	})
}

// literalHost reports whether a Host header names an IP address or
// localhost (which no DNS answer can rebind).
func literalHost(host string) bool {
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")
	if net.ParseIP(host) != nil {
		return true
	}
	return strings.EqualFold(strings.TrimSuffix(host, "."), "localhost")
}

// mutating wraps an extra handler: methods other than GET, HEAD and
// OPTIONS need migrateAllowed's admission (loopback, or the token).
func (s *Server) mutating(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodGet, http.MethodHead, http.MethodOptions:
		default:
			if !s.migrateAllowed(w, r) {
				return
			}
		}
		h.ServeHTTP(w, r)
	})
}
