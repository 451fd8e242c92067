package poller_test

import (
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// BenchmarkWriteToNestedEpoll prices, in the kernel, what parking the hub
// in the runtime poller costs a writer: the hub's epoll fd is itself in
// the runtime's epoll set, so a segment that makes a hub socket readable
// runs two epoll callbacks (the hub's set, then the runtime's set that
// holds it) where a package-net socket runs one. Each op writes 64 bytes
// on a loopback TCP conn, reads them at the other end, and harvests the
// events as the pollers would (epoll_wait with timeout 0 on each set), so
// that the next write finds the edges re-armed. write-ns/op is the write
// alone: "single" has the reading socket in one epoll set (as package net
// registers it), "nested" in a set whose fd is in another set (as a hub
// socket is).
//
//	go test -run '^$' -bench WriteToNestedEpoll -count 10 ./poller
func BenchmarkWriteToNestedEpoll(b *testing.B) {
	const in, et = unix.EPOLLIN, unix.EPOLLET
	for _, nested := range []bool{false, true} {
		name := "single"
		if nested {
			name = "nested"
		}
		b.Run(name, func(b *testing.B) {
			w, r := tcpPairFds(b)
			set := epollSet(b)
			sets := []int{set}
			for _, fd := range []int{w, r} {
				if err := unix.EpollCtl(set, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: in | unix.EPOLLOUT | unix.EPOLLRDHUP | et, Fd: int32(fd)}); err != nil {
					b.Fatal(err)
				}
			}
			if nested {
				outer := epollSet(b)
				if err := unix.EpollCtl(outer, unix.EPOLL_CTL_ADD, set, &unix.EpollEvent{Events: in | et, Fd: int32(set)}); err != nil {
					b.Fatal(err)
				}
				sets = append(sets, outer)
			}
			msg := make([]byte, 64)
			buf := make([]byte, 4096)
			evs := make([]unix.EpollEvent, 16)
			var writing time.Duration
			b.ResetTimer()
			for range b.N {
				start := time.Now()
				if _, err := unix.Write(w, msg); err != nil {
					b.Fatal(err)
				}
				writing += time.Since(start)
				if n, err := unix.Read(r, buf); n != len(msg) || err != nil {
					b.Fatalf("read %d, %v", n, err)
				}
				for _, s := range sets {
					if _, err := unix.EpollWait(s, evs, 0); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(writing.Nanoseconds())/float64(b.N), "write-ns/op")
		})
	}
}

// tcpPairFds returns the fds of a connected loopback TCP pair, non-blocking
// and owned by the caller (closed at cleanup).
func tcpPairFds(b *testing.B) (w, r int) {
	b.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		accepted <- c
	}()
	d, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	a := <-accepted
	if a == nil {
		b.Fatal("accept failed")
	}
	w, r = dupFd(b, d), dupFd(b, a)
	d.Close()
	a.Close()
	return w, r
}

// dupFd returns a non-blocking duplicate of c's fd, closed at cleanup.
func dupFd(b *testing.B, c net.Conn) int {
	b.Helper()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		b.Fatal(err)
	}
	fd := -1
	var derr error
	if err := rc.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		b.Fatal(err, derr)
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	return fd
}

// epollSet returns a new epoll fd, closed at cleanup.
func epollSet(b *testing.B) int {
	b.Helper()
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { unix.Close(fd) })
	return fd
}
