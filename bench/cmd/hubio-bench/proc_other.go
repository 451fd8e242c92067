//go:build !linux

package main

import (
	"errors"
	"time"
)

// procStatus is what the benchmark reads from /proc/self/status on Linux.
type procStatus struct {
	rss     int64
	threads int
}

type statusBuf [0]byte

// readProcStatus fails outside Linux: there is no /proc/self/status.
func readProcStatus(*statusBuf) (procStatus, error) {
	return procStatus{}, errors.ErrUnsupported
}

// cpuTime is not measured outside Linux.
func cpuTime() time.Duration { return 0 }
