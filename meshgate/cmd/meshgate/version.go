package main

import (
	"context"
	"fmt"
	"runtime/debug"
)

func init() {
	register(subcommand{Name: "version", Short: "print the version", Run: func(context.Context, []string) error {
		v := "devel"
		if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" {
			v = bi.Main.Version
		}
		fmt.Println("meshgate", v)
		return nil
	}})
}
