//go:build linux

package transport_test

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// requireMPTCP skips the test unless the kernel serves MPTCP on loopback:
// a socket of protocol IPPROTO_MPTCP can be opened (it fails with
// EPROTONOSUPPORT or EINVAL without kernel support, ENOPROTOOPT with
// net.mptcp.enabled=0), and a package net MPTCP dial to a package net
// listener gives a conn that uses MPTCP.
func requireMPTCP(t *testing.T) {
	t.Helper()
	s, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, unix.IPPROTO_MPTCP)
	if err != nil {
		t.Skipf("no MPTCP here: socket(IPPROTO_MPTCP): %v", err)
	}
	unix.Close(s)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
	defer c.Close()
	if using, err := c.(*net.TCPConn).MultipathTCP(); !using {
		t.Skipf("no MPTCP on loopback: a package net MPTCP dial gives MultipathTCP() = false, %v", err)
	}
}

// TestDialerMultipathTCP: a Dialer given SetMultipathTCP(true) dials MPTCP
// as net.Dialer does, both ends use it, the conn carries data, and the
// options the dial sets are best-effort: an MPTCP socket that refuses one
// (TCP_USER_TIMEOUT) still dials.
func TestDialerMultipathTCP(t *testing.T) {
	requireMPTCP(t)
	h := hubtest.NewHub(t)
	for _, tc := range []struct {
		name string
		ln   func() net.Listener
	}{
		{"to a package net listener", func() net.Listener {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			return ln
		}},
		{"to a hub listener", func() net.Listener { return listen(t, h, "tcp") }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := &transport.Dialer{Hub: h}
			if d.MultipathTCP() {
				t.Fatal("a zero Dialer asks for MPTCP")
			}
			d.SetMultipathTCP(true)
			if !d.MultipathTCP() {
				t.Fatal("MultipathTCP() = false after SetMultipathTCP(true)")
			}
			dialed, accepted := dialAccept(t, tc.ln(), d.Dial)
			hc := dialed.(*transport.Conn)
			if using, err := hc.MultipathTCP(); !using || err != nil {
				t.Errorf("dialed conn's MultipathTCP() = %v, %v, want true", using, err)
			}
			if using, err := accepted.(interface{ MultipathTCP() (bool, error) }).MultipathTCP(); !using || err != nil {
				t.Errorf("accepted conn's MultipathTCP() = %v, %v, want true", using, err)
			}
			err := hc.SetSockoptInt(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 20000)
			t.Logf("TCP_USER_TIMEOUT on the MPTCP conn: %v", err)
			if err != nil && !errors.Is(err, syscall.ENOPROTOOPT) {
				t.Errorf("TCP_USER_TIMEOUT: %v, want nil or ENOPROTOOPT", err)
			}
			if _, err := hc.Write([]byte("mptcp")); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 5)
			if _, err := accepted.Read(buf); err != nil || string(buf) != "mptcp" {
				t.Fatalf("read %q, %v", buf, err)
			}
		})
	}
}
