package etcd_test

import (
	"net"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
)

// acceptedUserTimeouts returns the TCP_USER_TIMEOUT of every connected TCP
// socket of this process whose local address is addr (the server sides of
// the conns accepted there), once per socket however many fds refer to it,
// and how many fds do. ok is false where this cannot be read.
func acceptedUserTimeouts(addr string) (timeouts []time.Duration, fds int, ok bool) {
	want, err := net.ResolveTCPAddr("tcp", addr)
	if err != nil {
		return nil, 0, false
	}
	entries, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return nil, 0, false
	}
	seen := make(map[uint64]bool) // socket inodes: a dup'ed fd is the same socket
	for _, f := range entries {
		fd, err := strconv.Atoi(f.Name())
		if err != nil {
			continue
		}
		sa, err := unix.Getsockname(fd)
		if err != nil {
			continue // not a socket, or closed since the listing
		}
		in4, isTCP4 := sa.(*unix.SockaddrInet4)
		if !isTCP4 || in4.Port != want.Port || !net.IP(in4.Addr[:]).Equal(want.IP) {
			continue
		}
		if lis, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ACCEPTCONN); err != nil || lis == 1 {
			continue // the listener
		}
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			continue
		}
		ms, err := unix.GetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT)
		if err != nil {
			continue
		}
		fds++
		if !seen[st.Ino] {
			seen[st.Ino] = true
			timeouts = append(timeouts, time.Duration(ms)*time.Millisecond)
		}
	}
	return timeouts, fds, true
}
