//go:build linux

package transport_test

import (
	"context"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// sockopts are the socket options a conn's setters and constructors touch,
// read back with getsockopt.
type sockopts struct {
	KeepAlive, KeepIdle, KeepIntvl, KeepCnt int
	LingerOn, Linger                        int32
	NoDelay                                 int
	RcvBuf, SndBuf                          int
}

// readSockopts reads c's socket options; tcp adds the TCP-level ones.
func readSockopts(t testing.TB, c net.Conn, tcp bool) sockopts {
	t.Helper()
	var o sockopts
	o.RcvBuf = sockoptInt(t, c, syscall.SOL_SOCKET, syscall.SO_RCVBUF)
	o.SndBuf = sockoptInt(t, c, syscall.SOL_SOCKET, syscall.SO_SNDBUF)
	if !tcp {
		return o
	}
	o.KeepAlive = sockoptInt(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE)
	o.KeepIdle = sockoptInt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE)
	o.KeepIntvl = sockoptInt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL)
	o.KeepCnt = sockoptInt(t, c, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT)
	o.NoDelay = sockoptInt(t, c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY)
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var l *unix.Linger
	var lerr error
	if err := rc.Control(func(fd uintptr) { l, lerr = unix.GetsockoptLinger(int(fd), unix.SOL_SOCKET, unix.SO_LINGER) }); err != nil {
		t.Fatal(err)
	}
	if lerr != nil {
		t.Fatal(lerr)
	}
	o.LingerOn, o.Linger = l.Onoff, l.Linger
	return o
}

// tcpSetters are the socket option setters of *net.TCPConn; a hub conn has
// them all.
type tcpSetters interface {
	SetKeepAlive(bool) error
	SetKeepAlivePeriod(time.Duration) error
	SetKeepAliveConfig(net.KeepAliveConfig) error
	SetLinger(int) error
	SetNoDelay(bool) error
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
}

// unixSetters are those of *net.UnixConn.
type unixSetters interface {
	SetReadBuffer(int) error
	SetWriteBuffer(int) error
}

var (
	_ tcpSetters  = (*net.TCPConn)(nil)
	_ tcpSetters  = (*transport.Conn)(nil)
	_ unixSetters = (*net.UnixConn)(nil)
	_ unixSetters = (*transport.Conn)(nil)
)

// TestSocketOptionsMatchPackageNet applies the same constructor settings and
// setter calls to a package net conn and a hub conn, and compares every
// socket option they touch.
func TestSocketOptionsMatchPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	custom := net.KeepAliveConfig{Enable: true, Idle: 20 * time.Second, Interval: 5 * time.Second, Count: 3}
	for _, tc := range []struct {
		name      string
		keepAlive time.Duration       // the dialers' KeepAlive
		config    net.KeepAliveConfig // the dialers' KeepAliveConfig
		calls     func(c tcpSetters) error
	}{
		{name: "a dialer's defaults"},
		{name: "a dialer's positive KeepAlive sets the idle time", keepAlive: 42 * time.Second},
		{name: "a dialer's KeepAlive is rounded up to a second", keepAlive: 1500 * time.Millisecond},
		{name: "a dialer's negative KeepAlive leaves keepalive off", keepAlive: -1},
		{name: "a dialer's KeepAliveConfig wins over KeepAlive", keepAlive: 42 * time.Second, config: custom},
		{name: "a dialer's KeepAliveConfig with negative fields keeps the kernel's", config: net.KeepAliveConfig{Enable: true, Idle: -1, Interval: -1, Count: -1}},
		{name: "a disabled KeepAliveConfig defers to KeepAlive", keepAlive: -1, config: net.KeepAliveConfig{Idle: 20 * time.Second}},
		{name: "SetKeepAlivePeriod(0) sets the 15 s default idle time", keepAlive: -1,
			calls: func(c tcpSetters) error { return c.SetKeepAlivePeriod(0) }},
		{name: "a negative SetKeepAlivePeriod changes nothing",
			calls: func(c tcpSetters) error { return c.SetKeepAlivePeriod(-time.Second) }},
		{name: "a positive SetKeepAlivePeriod sets the idle time only", config: custom,
			calls: func(c tcpSetters) error { return c.SetKeepAlivePeriod(40 * time.Second) }},
		{name: "SetKeepAlive(false) then SetKeepAlivePeriod leaves keepalive off",
			calls: func(c tcpSetters) error {
				if err := c.SetKeepAlive(false); err != nil {
					return err
				}
				return c.SetKeepAlivePeriod(30 * time.Second)
			}},
		{name: "SetKeepAlive(true) on a dialer without keepalive", keepAlive: -1,
			calls: func(c tcpSetters) error { return c.SetKeepAlive(true) }},
		{name: "SetKeepAliveConfig sets all four options",
			calls: func(c tcpSetters) error { return c.SetKeepAliveConfig(custom) }},
		{name: "SetKeepAliveConfig with zero fields sets the defaults", config: custom,
			calls: func(c tcpSetters) error { return c.SetKeepAliveConfig(net.KeepAliveConfig{Enable: true}) }},
		{name: "SetKeepAliveConfig disabled still sets the times", keepAlive: -1,
			calls: func(c tcpSetters) error {
				return c.SetKeepAliveConfig(net.KeepAliveConfig{Idle: 7 * time.Second, Interval: 3 * time.Second, Count: 2})
			}},
		{name: "SetKeepAliveConfig with negative fields changes only SO_KEEPALIVE", config: custom,
			calls: func(c tcpSetters) error {
				return c.SetKeepAliveConfig(net.KeepAliveConfig{Idle: -1, Interval: -1, Count: -1})
			}},
		{name: "SetLinger(-1) is the default",
			calls: func(c tcpSetters) error { return c.SetLinger(-1) }},
		{name: "SetLinger(0) discards unsent data",
			calls: func(c tcpSetters) error { return c.SetLinger(0) }},
		{name: "SetLinger(5) lingers",
			calls: func(c tcpSetters) error { return c.SetLinger(5) }},
		{name: "SetNoDelay(false) turns Nagle on",
			calls: func(c tcpSetters) error { return c.SetNoDelay(false) }},
		{name: "SetReadBuffer and SetWriteBuffer",
			calls: func(c tcpSetters) error {
				if err := c.SetReadBuffer(48 << 10); err != nil {
					return err
				}
				return c.SetWriteBuffer(40 << 10)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			std := net.Dialer{KeepAlive: tc.keepAlive, KeepAliveConfig: tc.config}
			hub := transport.Dialer{Hub: h, KeepAlive: tc.keepAlive, KeepAliveConfig: tc.config}
			sc, err := std.Dial("tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { sc.Close() })
			hc, err := hub.DialContext(context.Background(), "tcp", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { hc.Close() })
			if tc.calls != nil {
				if err := tc.calls(sc.(tcpSetters)); err != nil {
					t.Fatalf("package net conn: %v", err)
				}
				if err := tc.calls(hc.(tcpSetters)); err != nil {
					t.Fatalf("hub conn: %v", err)
				}
			}
			if want, got := readSockopts(t, sc, true), readSockopts(t, hc, true); got != want {
				t.Errorf("hub conn's socket options\n got %+v\nwant %+v (package net's)", got, want)
			}
		})
	}

	t.Run("accepted conns have the options of a ListenConfig's defaults", func(t *testing.T) {
		std, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { std.Close() })
		hub := listen(t, h, "tcp")
		_, stdConn := dialAccept(t, std, net.Dial)
		_, hubConn := dialAccept(t, hub, net.Dial)
		if want, got := readSockopts(t, stdConn, true), readSockopts(t, hubConn, true); got != want {
			t.Errorf("accepted hub conn's socket options\n got %+v\nwant %+v (package net's)", got, want)
		}
	})

	t.Run("SetReadBuffer and SetWriteBuffer on unix conns", func(t *testing.T) {
		addr := listenAddr(t, "unix")
		ln, err := net.Listen("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		sc, err := net.Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { sc.Close() })
		hc, err := (&transport.Dialer{Hub: h}).Dial("unix", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { hc.Close() })
		for _, c := range []unixSetters{sc.(unixSetters), hc.(unixSetters)} {
			if err := c.SetReadBuffer(48 << 10); err != nil {
				t.Fatal(err)
			}
			if err := c.SetWriteBuffer(40 << 10); err != nil {
				t.Fatal(err)
			}
		}
		if want, got := readSockopts(t, sc, false), readSockopts(t, hc, false); got != want {
			t.Errorf("hub unix conn's socket options\n got %+v\nwant %+v (package net's)", got, want)
		}
	})
}

// TestMultipathTCPMatchesPackageNet: MultipathTCP reports what
// (*net.TCPConn).MultipathTCP reports for the same kind of conn, with and
// without MPTCP on the dialing side.
func TestMultipathTCPMatchesPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	std, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { std.Close() })
	hub := listen(t, h, "tcp")
	for _, mptcp := range []bool{false, true} {
		var d net.Dialer
		d.SetMultipathTCP(mptcp)
		accepted := func(ln net.Listener) (bool, error) {
			_, a := dialAccept(t, ln, d.Dial)
			return a.(interface{ MultipathTCP() (bool, error) }).MultipathTCP()
		}
		want, werr := accepted(std)
		t.Logf("MPTCP dialer %v: package net accepted conn MultipathTCP() = %v, %v", mptcp, want, werr)
		got, gerr := accepted(hub)
		if got != want || (gerr == nil) != (werr == nil) {
			t.Errorf("dialer with MPTCP %v: accepted hub conn's MultipathTCP() = %v, %v; package net's = %v, %v", mptcp, got, gerr, want, werr)
		}
	}
	hc, err := (&transport.Dialer{Hub: h}).Dial("tcp", std.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { hc.Close() })
	if using, err := hc.(*transport.Conn).MultipathTCP(); using || err != nil {
		t.Errorf("dialed hub conn's MultipathTCP() = %v, %v, want false, nil", using, err)
	}
}

func TestTCPConnsHaveNoDelayAndKeepAlive(t *testing.T) {
	h := hubtest.NewHub(t)
	c1, c2 := pipe(t, h, "tcp", true, true)
	for _, c := range []struct {
		side string
		c    net.Conn
	}{{"dialed", c1}, {"accepted", c2}} {
		if v := sockoptInt(t, c.c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY); v != 1 {
			t.Errorf("%s conn: TCP_NODELAY = %d, want 1", c.side, v)
		}
		if v := sockoptInt(t, c.c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 1 {
			t.Errorf("%s conn: SO_KEEPALIVE = %d, want 1", c.side, v)
		}
		if v := sockoptInt(t, c.c, syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE); v != 15 {
			t.Errorf("%s conn: TCP_KEEPIDLE = %d, want package net's 15", c.side, v)
		}
	}

	t.Run("a negative Dialer.KeepAlive turns keepalive off", func(t *testing.T) {
		ln := listen(t, h, "tcp")
		acc := acceptAsync(t, ln)
		d := transport.Dialer{Hub: h, KeepAlive: -1}
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		await(t, acc, 5*time.Second, "Accept")
		if v := sockoptInt(t, c, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE); v != 0 {
			t.Errorf("SO_KEEPALIVE = %d, want 0", v)
		}
		if v := sockoptInt(t, c, syscall.IPPROTO_TCP, syscall.TCP_NODELAY); v != 1 {
			t.Errorf("TCP_NODELAY = %d, want 1", v)
		}
	})
}

func sockoptInt(t testing.TB, c net.Conn, level, name int) int {
	t.Helper()
	rc, err := c.(syscall.Conn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var serr error
	if err := rc.Control(func(fd uintptr) { v, serr = syscall.GetsockoptInt(int(fd), level, name) }); err != nil {
		t.Fatal(err)
	}
	if serr != nil {
		t.Fatal(serr)
	}
	return v
}
