package hubtest

import "os"

// OpenFDs returns the number of fds the process has open.
func OpenFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents) - 1 // ReadDir's own fd
}
