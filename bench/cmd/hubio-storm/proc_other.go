//go:build !linux

package main

import "time"

// procCPU is unknown off Linux.
func procCPU(int) time.Duration { return 0 }

// selfCPU is unknown off Linux.
func selfCPU() time.Duration { return 0 }

// raiseFileLimit does nothing off Linux.
func raiseFileLimit() uint64 { return 0 }

// loadAvg is unknown off Linux.
func loadAvg() string { return "?" }
