//go:build linux

package transport_test

import (
	"errors"
	"fmt"
	"net"
	"reflect"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// TestListenRefusesOtherNetworksAsPackageNet: networks that are not
// streams fail with exactly net.Listen's error (no socket is created to
// find out).
func TestListenRefusesOtherNetworksAsPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, tc := range []struct{ network, address string }{
		{"no-such-network", "127.0.0.1:0"},
		{"", "127.0.0.1:0"},
		{"tcp:80", "127.0.0.1:0"},
		{"udp", "127.0.0.1:0"},
		{"udp4", "127.0.0.1:0"},
		{"udp4", "[::1]:0"},
		{"udp6", "[::1]:0"},
		{"udp", "127.0.0.1"},
		{"ip", "127.0.0.1"},
		{"ip4:icmp", "127.0.0.1"},
		{"ip4:1", "127.0.0.1"},
		{"ip6:ipv6-icmp", "::1"},
		{"ip4:no-such-protocol", "127.0.0.1"},
	} {
		t.Run(fmt.Sprintf("%q %q", tc.network, tc.address), func(t *testing.T) {
			sl, serr := net.Listen(tc.network, tc.address)
			if serr == nil {
				sl.Close()
				t.Skipf("package net listens on %q here", tc.network)
			}
			hl, herr := transport.Listen(h, tc.network, tc.address)
			if herr == nil {
				hl.Close()
				t.Fatalf("Listen(%q, %q) succeeded; package net's fails with %v", tc.network, tc.address, serr)
			}
			if !reflect.DeepEqual(herr, serr) {
				t.Errorf("Listen(%q, %q):\n got %#v\nwant %#v (package net's)", tc.network, tc.address, herr, serr)
			}
			if err := validOpError(herr); err != nil {
				t.Error(err)
			}
		})
	}
}

// notSocketConn and notSocketListener are a conn and a listener with no
// socket under them.
type notSocketListener struct{ net.Listener }

func (notSocketListener) Addr() net.Addr { return &net.UnixAddr{Name: "nowhere", Net: "unix"} }

// TestNewConnAndWrapListenerFailWithOpErrors: every failure to move a conn
// or listener onto a hub is a *net.OpError, also for something that is no
// socket at all.
func TestNewConnAndWrapListenerFailWithOpErrors(t *testing.T) {
	h := hubtest.NewHub(t)
	p1, p2 := net.Pipe()
	t.Cleanup(func() { p1.Close(); p2.Close() })
	closedHub := hubtest.NewHub(t)
	closedHub.Close()
	tcp, _ := pipe(t, h, "tcp", false, false)
	closedTCP, _ := pipe(t, h, "tcp", false, false)
	closedTCP.Close()
	closedListener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closedListener.Close()
	for _, tc := range []struct {
		name   string
		move   func() error
		target error
	}{
		{"NewConn of a net.Pipe", func() error { _, err := transport.NewConn(h, p1); return err }, transport.ErrNotSocket},
		{"NewConnHub of a nil conn", func() error { _, err := transport.NewConnHub(h, nil); return err }, transport.ErrNotSocket},
		{"NewConn onto a closed hub", func() error { _, err := transport.NewConn(closedHub, tcp); return err }, net.ErrClosed},
		{"NewConn of a closed conn", func() error { _, err := transport.NewConn(h, closedTCP); return err }, net.ErrClosed},
		{"WrapListener of a closed listener", func() error {
			_, err := transport.WrapListener(h, closedListener)
			return err
		}, net.ErrClosed},
		{"WrapListener of no socket", func() error {
			_, err := transport.WrapListener(h, notSocketListener{})
			return err
		}, transport.ErrNotSocket},
		{"WrapListenerHub of a nil listener", func() error { _, err := transport.WrapListenerHub(h, nil); return err }, transport.ErrNotSocket},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.move()
			if err == nil {
				t.Fatal("succeeded")
			}
			if verr := validOpError(err); verr != nil {
				t.Error(verr)
			}
			if !errors.Is(err, tc.target) {
				t.Errorf("error %v does not match %v", err, tc.target)
			}
		})
	}
}

// TestClosedConnErrorsMatchPackageNet calls every method of a closed conn,
// hub and package net alike, and compares the errors' shape: Op, Net,
// which of the conn's addresses Source and Addr name, and the sentinel.
func TestClosedConnErrorsMatchPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, network := range []string{"tcp", "unix"} {
		std, _ := pipe(t, h, network, false, false)
		hub, _ := pipe(t, h, network, true, true)
		std.Close()
		hub.Close()
		type conn interface {
			net.Conn
			syscall.Conn
			SetReadBuffer(int) error
			SetWriteBuffer(int) error
			CloseWrite() error
			CloseRead() error
		}
		calls := []struct {
			name string
			call func(c conn) error
		}{
			{"Read", func(c conn) error { _, err := c.Read(make([]byte, 1)); return err }},
			{"Write", func(c conn) error { _, err := c.Write([]byte("x")); return err }},
			{"Close", func(c conn) error { return c.Close() }},
			{"CloseRead", func(c conn) error { return c.CloseRead() }},
			{"CloseWrite", func(c conn) error { return c.CloseWrite() }},
			{"SetDeadline", func(c conn) error { return c.SetDeadline(time.Now()) }},
			{"SetReadDeadline", func(c conn) error { return c.SetReadDeadline(time.Now()) }},
			{"SetWriteDeadline", func(c conn) error { return c.SetWriteDeadline(time.Now()) }},
			{"SetReadBuffer", func(c conn) error { return c.SetReadBuffer(1 << 16) }},
			{"SetWriteBuffer", func(c conn) error { return c.SetWriteBuffer(1 << 16) }},
			{"RawConn.Control", func(c conn) error {
				rc, err := c.SyscallConn()
				if err != nil {
					return err
				}
				return rc.Control(func(uintptr) {})
			}},
		}
		if network == "tcp" {
			calls = append(calls, []struct {
				name string
				call func(c conn) error
			}{
				{"SetNoDelay", func(c conn) error { return c.(tcpSetters).SetNoDelay(true) }},
				{"SetLinger", func(c conn) error { return c.(tcpSetters).SetLinger(0) }},
				{"SetKeepAlive", func(c conn) error { return c.(tcpSetters).SetKeepAlive(true) }},
				{"SetKeepAlivePeriod", func(c conn) error { return c.(tcpSetters).SetKeepAlivePeriod(time.Second) }},
				{"SetKeepAliveConfig", func(c conn) error {
					return c.(tcpSetters).SetKeepAliveConfig(net.KeepAliveConfig{Enable: true})
				}},
			}...)
		}
		// shape names the conn's addresses in an error by role.
		shape := func(c net.Conn, err error) string {
			oe, ok := err.(*net.OpError)
			if !ok {
				return fmt.Sprintf("%T", err)
			}
			role := func(a net.Addr) string {
				switch {
				case a == nil:
					return "nil"
				case reflect.DeepEqual(a, c.LocalAddr()):
					return "local"
				case reflect.DeepEqual(a, c.RemoteAddr()):
					return "remote"
				}
				return a.String()
			}
			return fmt.Sprintf("Op=%s Net=%s Source=%s Addr=%s ErrClosed=%v", oe.Op, oe.Net, role(oe.Source), role(oe.Addr), errors.Is(err, net.ErrClosed))
		}
		for _, call := range calls {
			t.Run(network+" "+call.name, func(t *testing.T) {
				serr, herr := call.call(std.(conn)), call.call(hub.(conn))
				if got, want := shape(hub, herr), shape(std, serr); got != want {
					t.Errorf("closed hub conn's %s error: %v\n got %s\nwant %s (package net's: %v)", call.name, herr, got, want, serr)
				}
				if err := validOpError(herr); err != nil {
					t.Error(err)
				}
			})
		}
	}
}

// TestDialAddressErrorsMatchPackageNet: an address or network a dial
// cannot use fails, before any traffic, with exactly net.Dialer's error.
func TestDialAddressErrorsMatchPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	local := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1)}
	for _, tc := range []struct{ network, address string }{
		{"no-such-network", "127.0.0.1:1"},
		{"tcp", "127.0.0.1"},
		{"tcp", "127.0.0.1:no-such-port"},
		{"tcp4", "[::1]:1"},
		{"tcp6", "127.0.0.1:1"},
	} {
		t.Run(fmt.Sprintf("%q %q", tc.network, tc.address), func(t *testing.T) {
			std := net.Dialer{LocalAddr: local}
			hub := transport.Dialer{Hub: h, LocalAddr: local}
			sc, serr := std.Dial(tc.network, tc.address)
			if serr == nil {
				sc.Close()
				t.Skipf("package net dials %q %q here", tc.network, tc.address)
			}
			hc, herr := hub.Dial(tc.network, tc.address)
			if herr == nil {
				hc.Close()
				t.Fatalf("dial succeeded; package net's fails with %v", serr)
			}
			if !reflect.DeepEqual(herr, serr) {
				t.Errorf("dial error:\n got %#v\nwant %#v (package net's)", herr, serr)
			}
			if err := validOpError(herr); err != nil {
				t.Error(err)
			}
		})
	}
}
