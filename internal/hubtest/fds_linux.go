package hubtest

import (
	"fmt"
	"os"
	"strings"
)

// OpenFDs returns the number of fds the process has open.
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // ReadDir's own fd
}

// describeFDs lists the open fds and what each refers to (socket:[inode],
// a path, anon_inode:[eventpoll]), for a leak report.
func describeFDs() string {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return ""
	}
	var b strings.Builder
	for _, e := range ents {
		target, err := os.Readlink("/proc/self/fd/" + e.Name())
		if err != nil {
			continue // ReadDir's own fd, closed by now
		}
		fmt.Fprintf(&b, " %s=%s", e.Name(), target)
	}
	return b.String()
}
