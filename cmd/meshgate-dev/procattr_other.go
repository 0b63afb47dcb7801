//go:build unix && !linux

package main

import "syscall"

// childAttr puts the meshgate child in its own process group (a terminal's
// Ctrl-C reaches it once, forwarded by the demo, not twice).
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
