package main

import (
	"os"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestPinCPUsRejectsBadLists(t *testing.T) {
	for _, list := range []string{"", "x", "2-1", "-1", "0-", "0,,1", "5000"} {
		if err := pinCPUs(list); err == nil {
			t.Errorf("pinCPUs(%q) accepted a bad list", list)
		}
	}
}

func TestPinCPUsToEveryAllowedCPU(t *testing.T) {
	// Pinning to all CPUs the process may use changes nothing, and must
	// leave every thread with that set.
	var want unix.CPUSet
	if err := unix.SchedGetaffinity(0, &want); err != nil {
		t.Fatal(err)
	}
	var cpus []string
	for cpu := range 1024 {
		if want.IsSet(cpu) {
			cpus = append(cpus, strconv.Itoa(cpu))
		}
	}
	if err := pinCPUs(strings.Join(cpus, ",")); err != nil {
		t.Fatal(err)
	}
	tasks, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	for _, task := range tasks {
		tid, _ := strconv.Atoi(task.Name())
		var got unix.CPUSet
		if err := unix.SchedGetaffinity(tid, &got); err != nil {
			continue // the thread exited
		}
		if got != want {
			t.Errorf("thread %d: CPU set %v after pinning, want %v", tid, got, want)
		}
	}
}
