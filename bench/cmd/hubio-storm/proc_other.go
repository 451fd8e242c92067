//go:build !linux

package main

import (
	"errors"
	"time"
)

// procCPU is unknown off Linux.
func procCPU(int) time.Duration { return 0 }

// selfCPU is unknown off Linux.
func selfCPU() time.Duration { return 0 }

// raiseFileLimit does nothing off Linux.
func raiseFileLimit() uint64 { return 0 }

// loadAvg is unknown off Linux.
func loadAvg() string { return "?" }

// pinCPUs is Linux-only.
func pinCPUs(string) error { return errors.New("-cpus and -storm-cpus need Linux") }
