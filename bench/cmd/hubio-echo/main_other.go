//go:build !linux

// Command hubio-echo measures a raw-socket echo over loopback against
// package net, hubio's transport and gnet. It runs on Linux only, as
// hubio's transport does.
package main

import (
	"fmt"
	"os"
)

func main() {
	fmt.Fprintln(os.Stderr, "hubio-echo: Linux only")
	os.Exit(2)
}
