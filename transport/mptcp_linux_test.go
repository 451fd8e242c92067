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

// TestDialerMultipathTCPFollowsGODEBUG: until SetMultipathTCP is called, a
// Dialer asks for MPTCP exactly when a net.Dialer does under the same
// GODEBUG (multipathtcp=1 or 3, the last setting winning); once called, it
// follows the call.
func TestDialerMultipathTCPFollowsGODEBUG(t *testing.T) {
	for _, godebug := range []string{
		"", "multipathtcp=0", "multipathtcp=1", "multipathtcp=2", "multipathtcp=3",
		"multipathtcp=1,multipathtcp=0", "multipathtcp=0,http2client=0,multipathtcp=3",
		"multipathtcpx=1", "x=1,multipathtcp=1",
	} {
		t.Setenv("GODEBUG", godebug)
		var d transport.Dialer
		var nd net.Dialer
		if got, want := d.MultipathTCP(), nd.MultipathTCP(); got != want {
			t.Errorf("GODEBUG=%q: MultipathTCP() = %v, net.Dialer's %v", godebug, got, want)
		}
		for _, use := range []bool{true, false} {
			d.SetMultipathTCP(use)
			if got := d.MultipathTCP(); got != use {
				t.Errorf("GODEBUG=%q: MultipathTCP() = %v after SetMultipathTCP(%v)", godebug, got, use)
			}
		}
	}
}

// TestZeroDialerDialsMultipathTCPUnderGODEBUG: with GODEBUG=multipathtcp=1,
// as with net.Dialer, a zero Dialer's conns are MPTCP.
func TestZeroDialerDialsMultipathTCPUnderGODEBUG(t *testing.T) {
	hubtest.MPTCPPair(t) // skips without MPTCP on loopback
	t.Setenv("GODEBUG", "multipathtcp=1")
	h := hubtest.NewHub(t)
	dialed, _ := dialAccept(t, listen(t, h, "tcp"), (&transport.Dialer{Hub: h}).Dial)
	if using, err := dialed.(*transport.Conn).MultipathTCP(); !using || err != nil {
		t.Errorf("MultipathTCP() = %v, %v, want true", using, err)
	}
}
