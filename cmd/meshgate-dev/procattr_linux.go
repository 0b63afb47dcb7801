package main

import "syscall"

// childAttr puts the meshgate child in its own process group (a terminal's
// Ctrl-C reaches it once, forwarded by the demo, not twice) and has the
// kernel send it SIGTERM if the demo dies without forwarding (SIGKILL).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
