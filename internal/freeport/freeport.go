// Package freeport picks loopback TCP ports for the tests and the bench
// that must know a port before anything binds it (Envoy listeners
// configured over xDS, the addresses those route to).
//
// A port taken from bind(0) and closed again is a port the kernel hands
// the next bind(0), in this process or another: a MeshGate listener on
// port 0 once took the port an Envoy listener was about to get over LDS.
// Pick therefore chooses outside the kernel's ephemeral range
// (net.ipv4.ip_local_port_range), where no bind(0) and no outgoing
// connection lands, checks the port is free by binding it, and never
// returns the same port twice in one process. Only another process
// picking explicit ports the same way can still collide, with a small
// chance per pick.
//
// The package imports only the standard library.
package freeport

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
)

// lowest is the smallest port Pick hands out: well above the registered
// ports services commonly take.
const lowest = 20000

var (
	mu     sync.Mutex
	issued = map[int]bool{}
)

// Pick returns a loopback TCP port that is free now, outside the ephemeral
// range, and not returned before by this process.
func Pick() (int, error) {
	lo, hi := ephemeralRange()
	var ranges [][2]int // candidate [from, to] ranges outside [lo, hi]
	if lo-1 >= lowest {
		ranges = append(ranges, [2]int{lowest, lo - 1})
	}
	if hi+1 <= 65535 {
		ranges = append(ranges, [2]int{max(hi+1, lowest), 65535})
	}
	size := 0
	for _, r := range ranges {
		size += r[1] - r[0] + 1
	}
	mu.Lock()
	defer mu.Unlock()
	for try := 0; try < 200 && size > 0; try++ {
		n := rand.IntN(size)
		port := 0
		for _, r := range ranges {
			if w := r[1] - r[0] + 1; n < w {
				port = r[0] + n
				break
			} else {
				n -= w
			}
		}
		if issued[port] || !free(port) {
			continue
		}
		issued[port] = true
		return port, nil
	}
	// No room outside the ephemeral range (or none free): fall back to
	// what the kernel gives, still never twice.
	for try := 0; try < 100; try++ {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return 0, fmt.Errorf("freeport: %w", err)
		}
		port := ln.Addr().(*net.TCPAddr).Port
		ln.Close()
		if !issued[port] {
			issued[port] = true
			return port, nil
		}
	}
	return 0, fmt.Errorf("freeport: no free loopback port")
}

// free reports whether port can be bound on loopback right now.
func free(port int) bool {
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.1", strconv.Itoa(port)))
	if err != nil {
		return false
	}
	ln.Close()
	return true
}

// ephemeralRange reads the kernel's range for bind(0) and outgoing
// connections; Linux's default where it cannot be read.
func ephemeralRange() (lo, hi int) {
	lo, hi = 32768, 60999
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if err != nil {
		return lo, hi
	}
	f := strings.Fields(string(b))
	if len(f) != 2 {
		return lo, hi
	}
	l, err1 := strconv.Atoi(f[0])
	h, err2 := strconv.Atoi(f[1])
	if err1 != nil || err2 != nil || l < 1 || h > 65535 || l > h {
		return lo, hi
	}
	return l, h
}
