package main

import (
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// pinCPUs restricts every thread of this process to the CPUs in list ("0",
// "1-3", "0,2-3") and sets GOMAXPROCS to their number. Threads the runtime
// starts later are cloned from pinned ones and inherit the set.
func pinCPUs(list string) error {
	var set unix.CPUSet
	for _, part := range strings.Split(list, ",") {
		lo, hi, isRange := strings.Cut(strings.TrimSpace(part), "-")
		a, err := strconv.Atoi(lo)
		if err != nil {
			return fmt.Errorf("CPU list %q: %v", list, err)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil {
				return fmt.Errorf("CPU list %q: %v", list, err)
			}
		}
		if a < 0 || b < a || b >= 1024 {
			return fmt.Errorf("CPU list %q: bad range %q", list, part)
		}
		for cpu := a; cpu <= b; cpu++ {
			set.Set(cpu)
		}
	}
	// GOMAXPROCS was set at start from the CPUs allowed then (a child
	// inherits its parent's pinning); make it the pinned set's size.
	runtime.GOMAXPROCS(set.Count())
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		return err
	}
	for _, t := range tasks {
		tid, err := strconv.Atoi(t.Name())
		if err != nil {
			continue
		}
		if err := unix.SchedSetaffinity(tid, &set); err != nil && err != unix.ESRCH {
			return fmt.Errorf("pinning thread %d to CPUs %s: %w", tid, list, err)
		}
	}
	return nil
}
