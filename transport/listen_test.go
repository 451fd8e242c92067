//go:build linux

package transport_test

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

func TestListenerCloseUnblocksAccept(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network+" accept returns net.ErrClosed within a second", func(t *testing.T) {
			ln := listen(t, h, network)
			acc := acceptAsync(t, ln)
			waitParked(t, 1)
			closeErr := make(chan error, 1)
			go func() { closeErr <- ln.Close() }()
			r := await(t, acc, time.Second, "Accept after listener Close")
			if err := <-closeErr; err != nil {
				t.Errorf("Close: %v", err)
			}
			checkOpErr(t, r.err, "accept", net.ErrClosed)
			// Accept on the closed listener fails at once, the same way.
			_, err := ln.Accept()
			checkOpErr(t, err, "accept", net.ErrClosed)
		})
	}
}

func TestAddressesMatchPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network+" addresses equal those the std peer reports", func(t *testing.T) {
			for _, p := range pairings {
				c1, c2 := pipe(t, h, network, p.hubListen, p.hubDial)
				for _, a := range []struct {
					what      string
					hub, peer net.Addr
				}{
					{"dialed LocalAddr vs accepted RemoteAddr", c1.LocalAddr(), c2.RemoteAddr()},
					{"dialed RemoteAddr vs accepted LocalAddr", c1.RemoteAddr(), c2.LocalAddr()},
				} {
					if !reflect.DeepEqual(a.hub, a.peer) {
						t.Errorf("%s: %s: %#v != %#v", p.name, a.what, a.hub, a.peer)
					}
				}
			}
		})
		t.Run(network+" hub and std conns report addresses of the same types", func(t *testing.T) {
			hd, ha := pipe(t, h, network, true, true)
			sd, sa := pipe(t, h, network, false, false)
			for _, a := range []struct {
				what     string
				hub, std net.Addr
			}{
				{"dialed LocalAddr", hd.LocalAddr(), sd.LocalAddr()},
				{"dialed RemoteAddr", hd.RemoteAddr(), sd.RemoteAddr()},
				{"accepted LocalAddr", ha.LocalAddr(), sa.LocalAddr()},
				{"accepted RemoteAddr", ha.RemoteAddr(), sa.RemoteAddr()},
			} {
				if reflect.TypeOf(a.hub) != reflect.TypeOf(a.std) {
					t.Errorf("%s: hub %T, std %T", a.what, a.hub, a.std)
				}
				if a.hub == nil || a.std == nil {
					continue
				}
				if a.hub.Network() != a.std.Network() {
					t.Errorf("%s: hub network %q, std %q", a.what, a.hub.Network(), a.std.Network())
				}
				if network == "tcp" && !a.hub.(*net.TCPAddr).IP.Equal(a.std.(*net.TCPAddr).IP) {
					t.Errorf("%s: hub IP %v, std %v", a.what, a.hub, a.std)
				}
			}
		})
	}

	t.Run("listener addresses equal those of net.Listen", func(t *testing.T) {
		for _, tc := range []struct{ network, addr string }{
			{"tcp", "127.0.0.1:0"},
			{"tcp4", "127.0.0.1:0"},
			{"tcp", ":0"},
			{"tcp6", "[::1]:0"},
			{"unix", "sock"},
		} {
			addr := tc.addr
			if tc.network == "unix" {
				addr = filepath.Join(t.TempDir(), tc.addr)
			}
			hl, herr := transport.Listen(h, tc.network, addr)
			if herr == nil {
				hl.Close()
			}
			if tc.network == "unix" {
				addr += "2"
			}
			sl, serr := net.Listen(tc.network, addr)
			if serr != nil {
				if herr == nil {
					t.Errorf("%s %s: std failed (%v), hub did not", tc.network, tc.addr, serr)
				}
				continue
			}
			sl.Close()
			if herr != nil {
				t.Errorf("%s %s: %v", tc.network, tc.addr, herr)
				continue
			}
			ha, sa := hl.Addr(), sl.Addr()
			if reflect.TypeOf(ha) != reflect.TypeOf(sa) || ha.Network() != sa.Network() {
				t.Errorf("%s %s: hub Addr %#v, std %#v", tc.network, tc.addr, ha, sa)
			}
			if ta, ok := ha.(*net.TCPAddr); ok {
				if !ta.IP.Equal(sa.(*net.TCPAddr).IP) || ta.Port == 0 {
					t.Errorf("%s %s: hub Addr %v, std %v", tc.network, tc.addr, ha, sa)
				}
			}
			if ua, ok := ha.(*net.UnixAddr); ok && ua.Name != strings.TrimSuffix(sa.(*net.UnixAddr).Name, "2") {
				t.Errorf("%s %s: hub Addr %v, std %v", tc.network, tc.addr, ha, sa)
			}
		}
	})

	t.Run("a unix listener's socket file exists until Close removes it", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "s")
		ln, err := transport.Listen(h, "unix", path)
		if err != nil {
			t.Fatal(err)
		}
		fi, err := os.Stat(path)
		if err != nil {
			ln.Close()
			t.Fatalf("socket file after Listen: %v", err)
		}
		if fi.Mode().Type() != os.ModeSocket {
			t.Errorf("%s has mode %v, want a socket", path, fi.Mode())
		}
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if err := ln.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file after Close: %v, want it removed", err)
		}
	})

	t.Run("an abstract unix listener accepts hub and std dials", func(t *testing.T) {
		name := fmt.Sprintf("@hubio-test-%d-%d", os.Getpid(), time.Now().UnixNano())
		ln, err := transport.Listen(h, "unix", name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if got := ln.Addr().String(); got != name {
			t.Errorf("Addr() = %q, want %q", got, name)
		}
		d := transport.Dialer{Hub: h}
		for _, dial := range []func() (net.Conn, error){
			func() (net.Conn, error) { return d.Dial("unix", name) },
			func() (net.Conn, error) { return net.Dial("unix", name) },
		} {
			acc := acceptAsync(t, ln)
			c, err := dial()
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if r := await(t, acc, 5*time.Second, "Accept"); r.err != nil {
				t.Fatal(r.err)
			}
		}
	})

	t.Run("Listen errors are the *net.OpError net.Listen returns", func(t *testing.T) {
		for _, tc := range []struct{ network, addr string }{
			{"tcp", "127.0.0.1:99999"},
			{"tcp", "127.0.0.1"},
			{"tcp4", "[::1]:0"},
			{"no-such-net", "127.0.0.1:0"},
			{"udp", "127.0.0.1:0"},
			{"udp6", "[::1]:0"},
			{"ip4:icmp", "127.0.0.1"},
			{"unix", filepath.Join(t.TempDir(), "no", "such", "dir")},
		} {
			_, herr := transport.Listen(h, tc.network, tc.addr)
			_, serr := net.Listen(tc.network, tc.addr)
			if herr == nil || serr == nil {
				t.Errorf("Listen(%q, %q): hub error %v, std error %v; want both to fail", tc.network, tc.addr, herr, serr)
				continue
			}
			if herr.Error() != serr.Error() {
				t.Errorf("Listen(%q, %q): hub error %q, std %q", tc.network, tc.addr, herr, serr)
			}
			hoe, soe := checkOpErr(t, herr, "listen", nil), checkOpErr(t, serr, "listen", nil)
			if hoe.Net != soe.Net || reflect.TypeOf(hoe.Err) != reflect.TypeOf(soe.Err) {
				t.Errorf("Listen(%q, %q): hub OpError{Net: %q, Err: %T}, std OpError{Net: %q, Err: %T}", tc.network, tc.addr, hoe.Net, hoe.Err, soe.Net, soe.Err)
			}
		}
		// Package net listens on unix packet and datagram sockets; the hub
		// refuses them, as unsupported, before a socket is made.
		for _, network := range []string{"unixpacket", "unixgram"} {
			path := filepath.Join(t.TempDir(), "sock")
			_, err := transport.Listen(h, network, path)
			if oe := checkOpErr(t, err, "listen", nil); oe.Net != network {
				t.Errorf("Listen(%q): OpError.Net = %q", network, oe.Net)
			}
			if !errors.Is(err, errors.ErrUnsupported) {
				t.Errorf("Listen(%q) = %v, want errors.ErrUnsupported", network, err)
			}
			if _, err := os.Stat(path); !os.IsNotExist(err) {
				t.Errorf("Listen(%q) left %s behind (stat: %v)", network, path, err)
			}
		}
	})
}

// TestHubCountsListenersApartFromConns: a hub listener counts in the hub's
// Stats().Registered but not in Conns; each accepted, dialed or adopted
// conn counts in both, and leaves both when it closes.
func TestHubCountsListenersApartFromConns(t *testing.T) {
	h := hubtest.NewHub(t)
	want := func(what string, registered, conns int64) {
		t.Helper()
		if s := h.Stats(); s.Registered != registered || s.Conns != conns {
			t.Fatalf("%s: Registered %d, Conns %d; want %d, %d", what, s.Registered, s.Conns, registered, conns)
		}
	}
	ln := listen(t, h, "tcp")
	want("a listener", 1, 0)
	std, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer std.Close()
	wl, err := transport.WrapListener(h, std)
	if err != nil {
		t.Fatal(err)
	}
	want("two listeners", 2, 0)
	d := transport.Dialer{Hub: h}
	dialed, accepted := dialAccept(t, ln, d.Dial)
	want("a dialed and an accepted conn", 4, 2)
	sc, err := net.Dial("tcp", std.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer sc.Close()
	adopted, err := transport.NewConn(h, sc)
	if err != nil {
		t.Fatal(err)
	}
	want("an adopted conn", 5, 3)
	for _, c := range []net.Conn{dialed, accepted, adopted} {
		c.Close()
	}
	wl.Close()
	want("conns and the wrapped listener closed", 1, 0)
}
