//go:build !linux

package main

import "errors"

// pinCPUs is Linux-only.
func pinCPUs(string) error { return errors.New("-cpus and -storm-cpus need Linux") }
