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

// TestDialerMultipathTCP: a Dialer given SetMultipathTCP(true) dials MPTCP
// as net.Dialer does, both ends use it, the conn carries data, and the
// options the dial sets are best-effort: an MPTCP socket that refuses one
// (TCP_USER_TIMEOUT) still dials.
func TestDialerMultipathTCP(t *testing.T) {
	hubtest.MPTCPPair(t) // skips without MPTCP on loopback
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
