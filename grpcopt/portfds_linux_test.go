//go:build linux

package grpcopt_test

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// portFDs returns how many of the process's fds are TCP sockets connected
// to or from port: both ends of every conn to a listener on port, not the
// listening socket. Two fds on one socket (a duplicate left open) count
// twice. Unlike a count of all the process's fds, it does not move when
// other tests' conns close late.
func portFDs(t *testing.T, port int) int {
	t.Helper()
	inodes := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		if err := socketsOnPort(f, port, inodes); err != nil {
			t.Fatal(err)
		}
	}
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range ents {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", e.Name()))
		if err != nil {
			continue // closed meanwhile, or ReadDir's own fd
		}
		if ino, ok := strings.CutPrefix(target, "socket:["); ok && inodes[strings.TrimSuffix(ino, "]")] {
			n++
		}
	}
	return n
}

// socketsOnPort adds to inodes the inode of each socket in the
// /proc/net/tcp-format table f whose local or remote port is port, except
// listening ones (state 0A).
func socketsOnPort(f string, port int, inodes map[string]bool) error {
	file, err := os.Open(f)
	if os.IsNotExist(err) {
		return nil // no IPv6
	}
	if err != nil {
		return err
	}
	defer file.Close()
	hexPort := func(addr string) int {
		i := strings.LastIndexByte(addr, ':')
		p, _ := strconv.ParseUint(addr[i+1:], 16, 16)
		return int(p)
	}
	sc := bufio.NewScanner(file)
	sc.Scan() // the header
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 {
			return fmt.Errorf("%s: short line %q", f, sc.Text())
		}
		if fields[3] == "0A" || fields[9] == "0" {
			continue
		}
		if hexPort(fields[1]) == port || hexPort(fields[2]) == port {
			inodes[fields[9]] = true
		}
	}
	return sc.Err()
}
