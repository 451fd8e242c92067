package hubtest

import (
	"context"
	"net"
	"testing"

	"golang.org/x/sys/unix"
)

// MPTCPPair skips the test unless the kernel serves Multipath TCP on
// loopback, and otherwise returns a connected package net pair that uses
// it: the dialed end and the listener's accepted end, both closed at
// cleanup. Without kernel support a socket of protocol IPPROTO_MPTCP fails
// (EPROTONOSUPPORT or EINVAL; ENOPROTOOPT with net.mptcp.enabled=0), and
// where it opens, package net may still fall back to TCP: the test skips
// unless the dialed conn reports MultipathTCP() true.
func MPTCPPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Skipf("no MPTCP here: socket(IPPROTO_MPTCP): %v", err)
	}
	unix.Close(s)
	var lc net.ListenConfig
	lc.SetMultipathTCP(true)
	ln, err := lc.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var d net.Dialer
	d.SetMultipathTCP(true)
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	dialed = c.(*net.TCPConn)
	t.Cleanup(func() { dialed.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	accepted = a.(*net.TCPConn)
	t.Cleanup(func() { accepted.Close() })
	if using, err := dialed.MultipathTCP(); !using || err != nil {
		t.Skipf("no MPTCP on loopback: a package net MPTCP dial gives MultipathTCP() = %v, %v", using, err)
	}
	return dialed, accepted
}
