//go:build !linux

package sysstat

import "time"

// ProcCPU is unknown off Linux: 0.
func ProcCPU(int) time.Duration { return 0 }

// RaiseFileLimit does nothing off Linux and returns 0.
func RaiseFileLimit() uint64 { return 0 }

// LoadAvg is unknown off Linux: "?".
func LoadAvg() string { return "?" }
