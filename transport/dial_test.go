//go:build linux

package transport_test

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

func TestDialClosedPortIsRefused(t *testing.T) {
	h := hubtest.NewHub(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	d := transport.Dialer{Hub: h}
	c, err := d.DialContext(context.Background(), "tcp", addr)
	if err == nil {
		c.Close()
		t.Fatalf("dial to the closed port %s succeeded", addr)
	}
	oe := checkOpErr(t, err, "dial", syscall.ECONNREFUSED)
	if oe.Addr == nil || oe.Addr.String() != addr {
		t.Errorf("OpError.Addr = %v, want %s", oe.Addr, addr)
	}

	t.Run("a unix path with no listener is not found", func(t *testing.T) {
		_, err := d.DialContext(context.Background(), "unix", filepath.Join(t.TempDir(), "none"))
		checkOpErr(t, err, "dial", syscall.ENOENT)
	})
}

// hangingAddr returns the address of a listening socket on 127.0.0.1 whose
// accept queue is full, so that a connect to it hangs (the kernel drops the
// SYN). It skips the test where that cannot be provoked.
func hangingAddr(t *testing.T) string {
	t.Helper()
	return hangingAddrOn(t, netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), 0))
}

// hangingAddrOn is hangingAddr on a given loopback address and port (0 for
// any); it skips the test if the address cannot be bound.
func hangingAddrOn(t *testing.T, ap netip.AddrPort) string {
	t.Helper()
	family := syscall.AF_INET6
	var sa syscall.Sockaddr = &syscall.SockaddrInet6{Addr: ap.Addr().As16(), Port: int(ap.Port())}
	if ap.Addr().Is4() {
		family = syscall.AF_INET
		sa = &syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}
	}
	fd, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Skipf("no socket for %v: %v", ap, err)
	}
	t.Cleanup(func() { syscall.Close(fd) })
	if err := syscall.Bind(fd, sa); err != nil {
		t.Skipf("cannot bind %v: %v", ap, err)
	}
	if err := syscall.Listen(fd, 0); err != nil {
		t.Fatal(err)
	}
	bound, err := syscall.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	port := 0
	switch bound := bound.(type) {
	case *syscall.SockaddrInet4:
		port = bound.Port
	case *syscall.SockaddrInet6:
		port = bound.Port
	}
	addr := net.JoinHostPort(ap.Addr().String(), fmt.Sprint(port))
	for range 16 {
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err != nil {
			if ne, ok := err.(net.Error); ok && ne.Timeout() {
				return addr // the queue is full
			}
			t.Fatalf("filling the accept queue: %v", err)
		}
		t.Cleanup(func() { c.Close() })
	}
	t.Skip("a connect to a listener with a full accept queue does not hang on this kernel")
	return ""
}

func TestDialAbortsWhenConnectHangs(t *testing.T) {
	h := hubtest.NewHub(t)
	addr := hangingAddr(t)
	d := transport.Dialer{Hub: h}

	t.Run("cancelling the context aborts the dial", func(t *testing.T) {
		before := hubtest.CountFDs(t)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		stop := time.AfterFunc(50*time.Millisecond, cancel)
		defer stop.Stop()
		r := await(t, async(func() (int, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if c != nil {
				c.Close()
			}
			return 0, err
		}), 5*time.Second, "a dial whose context was cancelled")
		checkOpErr(t, r.err, "dial", context.Canceled)
		if r.took > 50*time.Millisecond+time.Second {
			t.Errorf("the dial took %v, more than a second after the cancel", r.took)
		}
		hubtest.WaitFDs(t, before)
	})

	t.Run("Dialer.Timeout aborts the dial with a timeout error", func(t *testing.T) {
		before := hubtest.CountFDs(t)
		d := d
		d.Timeout = 100 * time.Millisecond
		r := await(t, async(func() (int, error) {
			c, err := d.DialContext(context.Background(), "tcp", addr)
			if c != nil {
				c.Close()
			}
			return 0, err
		}), 5*time.Second, "a dial with a timeout")
		checkOpErr(t, r.err, "dial", nil)
		var ne net.Error
		if !(errors.As(r.err, &ne) && ne.Timeout()) && !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("got error %v, want a timeout", r.err)
		}
		if r.took < 100*time.Millisecond || r.took > 2*time.Second {
			t.Errorf("the dial took %v, want about 100ms", r.took)
		}
		hubtest.WaitFDs(t, before)
	})

	t.Run("a context deadline aborts the dial", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		r := await(t, async(func() (int, error) {
			c, err := d.DialContext(ctx, "tcp", addr)
			if c != nil {
				c.Close()
			}
			return 0, err
		}), 5*time.Second, "a dial with a context deadline")
		checkOpErr(t, r.err, "dial", nil)
		var ne net.Error
		if !(errors.As(r.err, &ne) && ne.Timeout()) && !errors.Is(r.err, context.DeadlineExceeded) {
			t.Errorf("got error %v, want a timeout", r.err)
		}
	})
}

// TestDialAbortErrorsMatchPackageNet compares, for each way a hanging dial
// can end early, the hub dialer's error with net.Dialer's: the same text,
// the same Timeout(), the same context error under errors.Is.
func TestDialAbortErrorsMatchPackageNet(t *testing.T) {
	h := hubtest.NewHub(t)
	addr := hangingAddr(t)
	for _, tc := range []struct {
		name    string
		timeout time.Duration // Dialer.Timeout
		ctx     func() (context.Context, context.CancelFunc)
		is      error
	}{
		{"cancel", 0, func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			stop := time.AfterFunc(50*time.Millisecond, cancel)
			return ctx, func() { stop.Stop(); cancel() }
		}, context.Canceled},
		{"Dialer.Timeout", 50 * time.Millisecond, func() (context.Context, context.CancelFunc) {
			return context.Background(), func() {}
		}, context.DeadlineExceeded},
		{"context deadline", 0, func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 50*time.Millisecond)
		}, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dial := func(hub bool) error {
				ctx, cancel := tc.ctx()
				defer cancel()
				var c net.Conn
				var err error
				if hub {
					c, err = (&transport.Dialer{Hub: h, Timeout: tc.timeout}).DialContext(ctx, "tcp", addr)
				} else {
					c, err = (&net.Dialer{Timeout: tc.timeout}).DialContext(ctx, "tcp", addr)
				}
				if c != nil {
					c.Close()
				}
				return err
			}
			herr, serr := dial(true), dial(false)
			if herr == nil || serr == nil {
				t.Fatalf("hub error %v, std error %v; want both to fail", herr, serr)
			}
			if herr.Error() != serr.Error() {
				t.Errorf("hub error %q, std %q", herr, serr)
			}
			var hne, sne net.Error
			if !errors.As(herr, &hne) || !errors.As(serr, &sne) || hne.Timeout() != sne.Timeout() {
				t.Errorf("Timeout(): hub %v, std %v", hne != nil && hne.Timeout(), sne != nil && sne.Timeout())
			}
			if tc.is == context.Canceled {
				if !errors.Is(herr, tc.is) || !errors.Is(serr, tc.is) {
					t.Errorf("errors.Is(%v): hub %v, std %v", tc.is, errors.Is(herr, tc.is), errors.Is(serr, tc.is))
				}
				return
			}
			// Package net's timeout matches context.DeadlineExceeded or
			// os.ErrDeadlineExceeded, whichever noticed first; the hub's
			// matches both.
			if !errors.Is(serr, context.DeadlineExceeded) && !errors.Is(serr, os.ErrDeadlineExceeded) {
				t.Errorf("std error %v matches neither deadline error", serr)
			}
			if !errors.Is(herr, context.DeadlineExceeded) || !errors.Is(herr, os.ErrDeadlineExceeded) {
				t.Errorf("hub error %v: errors.Is context.DeadlineExceeded %v, os.ErrDeadlineExceeded %v; want both",
					herr, errors.Is(herr, context.DeadlineExceeded), errors.Is(herr, os.ErrDeadlineExceeded))
			}
		})
	}
}

// TestDialContextCancelledAsItConnects cancels dials at random moments, many
// of them just as the connect completes. A dial either fails with the
// context's error or returns a conn the cancel has no effect on (package
// net: "once successfully connected, any expiration of the context will not
// affect the connection").
func TestDialContextCancelledAsItConnects(t *testing.T) {
	h := hubtest.NewHub(t)
	ln := listen(t, h, "tcp")
	accepted := make(chan struct{})
	go func() {
		defer close(accepted)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	t.Cleanup(func() { ln.Close(); <-accepted })
	d := transport.Dialer{Hub: h}
	succeeded := 0
	for i := range 2000 {
		ctx, cancel := context.WithCancel(context.Background())
		cancelled := make(chan struct{})
		spin := rand.IntN(50000)
		go func() {
			defer close(cancelled)
			x := 0
			for j := range spin {
				x ^= j
			}
			_ = x
			cancel()
		}()
		c, err := d.DialHub(ctx, "tcp", ln.Addr().String())
		<-cancelled
		if err != nil {
			checkOpErr(t, err, "dial", context.Canceled)
			continue
		}
		succeeded++
		_, werr := c.Write([]byte("x"))
		c.Close()
		if werr != nil {
			t.Fatalf("dial %d succeeded, its context was cancelled afterwards, and then Write failed: %v", i, werr)
		}
	}
	t.Logf("%d of 2000 dials succeeded", succeeded)
}

func TestDialLocalhost(t *testing.T) {
	h := hubtest.NewHub(t)
	d := transport.Dialer{Hub: h}
	for _, tc := range []struct{ name, ip string }{
		{"listener on 127.0.0.1", "127.0.0.1"},
		{"listener on ::1", "::1"},
	} {
		t.Run("localhost reaches a "+tc.name, func(t *testing.T) {
			ln, err := transport.ListenHub(h, "tcp", net.JoinHostPort(tc.ip, "0"))
			if err != nil {
				if tc.ip == "::1" {
					t.Skipf("no IPv6 loopback: %v", err)
				}
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			ips, err := net.DefaultResolver.LookupNetIP(context.Background(), "ip", "localhost")
			if err != nil {
				t.Fatal(err)
			}
			want := netip.MustParseAddr(tc.ip)
			found := false
			for i, ip := range ips {
				ips[i] = ip.Unmap()
				found = found || ips[i] == want
			}
			if !found {
				t.Skipf("localhost resolves to %v here, not to %v", ips, want)
			}
			port := ln.Addr().(*net.TCPAddr).Port
			dialAndAccept(t, d, ln, fmt.Sprintf("localhost:%d", port), netip.AddrPortFrom(want, uint16(port)))
		})
	}

	// A name that resolves to both loopback addresses, from a fake DNS
	// server, makes the dialer fall back from one family to the other.
	for _, tc := range []struct{ name, ip string }{
		{"falls back to 127.0.0.1 when ::1 refuses", "127.0.0.1"},
		{"reaches ::1 when it listens", "::1"},
	} {
		t.Run("a name resolving to ::1 and 127.0.0.1 "+tc.name, func(t *testing.T) {
			ln, err := transport.ListenHub(h, "tcp", net.JoinHostPort(tc.ip, "0"))
			if err != nil {
				t.Skipf("cannot listen on %s: %v", tc.ip, err)
			}
			t.Cleanup(func() { ln.Close() })
			l6, err := net.Listen("tcp", "[::1]:0")
			if err != nil {
				t.Skipf("no IPv6 loopback: %v", err)
			}
			l6.Close()
			d := d
			d.Resolver = fakeResolver(netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1"))
			port := ln.Addr().(*net.TCPAddr).Port
			dialAndAccept(t, d, ln, fmt.Sprintf("hubio-dual.test:%d", port), netip.AddrPortFrom(netip.MustParseAddr(tc.ip), uint16(port)))
		})
	}
}

// dialAndAccept dials address and checks that ln accepts the conn and that
// the conn reaches want.
func dialAndAccept(t *testing.T, d transport.Dialer, ln net.Listener, address string, want netip.AddrPort) {
	t.Helper()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := d.DialContext(ctx, "tcp", address)
	if err != nil {
		ln.Close()
		<-acc
		t.Fatalf("dial %s: %v", address, err)
	}
	defer c.Close()
	s := <-acc
	if s == nil {
		t.Fatal("Accept failed")
	}
	defer s.Close()
	if got := c.RemoteAddr().(*net.TCPAddr).AddrPort(); netip.AddrPortFrom(got.Addr().Unmap(), got.Port()) != want {
		t.Errorf("dialed conn's RemoteAddr is %v, want %v", got, want)
	}
	if _, err := c.Write([]byte("hi")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2)
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "hi" {
		t.Fatalf("accepted conn read %q, %v", buf, err)
	}
}

// fakeResolver returns a resolver whose DNS server, served in memory,
// answers every A and AAAA query with those of addrs.
func fakeResolver(addrs ...netip.Addr) *net.Resolver {
	return &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, address string) (net.Conn, error) {
			client, server := net.Pipe()
			go serveDNS(server, addrs)
			return client, nil
		},
	}
}

// serveDNS answers DNS queries framed as over TCP (a net.Pipe is not a
// PacketConn) until the client hangs up.
func serveDNS(c net.Conn, addrs []netip.Addr) {
	defer c.Close()
	for {
		var l [2]byte
		if _, err := io.ReadFull(c, l[:]); err != nil {
			return
		}
		q := make([]byte, binary.BigEndian.Uint16(l[:]))
		if _, err := io.ReadFull(c, q); err != nil {
			return
		}
		var p dnsmessage.Parser
		hdr, err := p.Start(q)
		if err != nil {
			return
		}
		qs, err := p.AllQuestions()
		if err != nil {
			return
		}
		b := dnsmessage.NewBuilder(make([]byte, 2, 512), dnsmessage.Header{
			ID: hdr.ID, Response: true, Authoritative: true,
			RecursionDesired: hdr.RecursionDesired, RecursionAvailable: true,
		})
		b.StartQuestions()
		for _, q := range qs {
			b.Question(q)
		}
		b.StartAnswers()
		for _, q := range qs {
			rh := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
			for _, a := range addrs {
				switch {
				case q.Type == dnsmessage.TypeA && a.Is4():
					b.AResource(rh, dnsmessage.AResource{A: a.As4()})
				case q.Type == dnsmessage.TypeAAAA && a.Is6():
					b.AAAAResource(rh, dnsmessage.AAAAResource{AAAA: a.As16()})
				}
			}
		}
		msg, err := b.Finish()
		if err != nil {
			return
		}
		binary.BigEndian.PutUint16(msg, uint16(len(msg)-2))
		if _, err := c.Write(msg); err != nil {
			return
		}
	}
}

// TestDialRacesTheOtherFamily: a name that resolves to ::1, whose SYNs are
// dropped, and to 127.0.0.1, which accepts, connects after FallbackDelay
// (RFC 6555 Fast Fallback), not after the ::1 attempt's share of the
// timeout; a negative FallbackDelay tries the families one after the
// other. Package net's Dialer, given the same resolver, is the reference.
func TestDialRacesTheOtherFamily(t *testing.T) {
	h := hubtest.NewHub(t)
	ln := listen(t, h, "tcp")
	port := ln.Addr().(*net.TCPAddr).Port
	hanging := hangingAddrOn(t, netip.AddrPortFrom(netip.MustParseAddr("::1"), uint16(port)))
	t.Logf("::1 hangs at %s; 127.0.0.1 accepts at %s", hanging, ln.Addr())
	resolver := fakeResolver(netip.MustParseAddr("::1"), netip.MustParseAddr("127.0.0.1"))
	address := net.JoinHostPort("hubio-dual.test", strconv.Itoa(port))
	go func() { // accept and close whatever connects
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()

	type dialer interface {
		DialContext(ctx context.Context, network, address string) (net.Conn, error)
	}
	dialers := func(fallbackDelay time.Duration) []struct {
		name string
		d    dialer
	} {
		return []struct {
			name string
			d    dialer
		}{
			{"package net", &net.Dialer{Resolver: resolver, FallbackDelay: fallbackDelay}},
			{"hub", &transport.Dialer{Hub: h, Resolver: resolver, FallbackDelay: fallbackDelay}},
		}
	}
	for _, tc := range []struct {
		name          string
		fallbackDelay time.Duration
		wait          time.Duration // FallbackDelay in effect
	}{
		{"the default 300 ms head start", 0, 300 * time.Millisecond},
		{"a 100 ms head start", 100 * time.Millisecond, 100 * time.Millisecond},
	} {
		for _, d := range dialers(tc.fallbackDelay) {
			t.Run(d.name+" dialer falls back to IPv4 after "+tc.name, func(t *testing.T) {
				// Without the race, ::1 would take its share of the 20 s:
				// 10 s.
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				start := time.Now()
				c, err := d.d.DialContext(ctx, "tcp", address)
				took := time.Since(start)
				if err != nil {
					t.Fatalf("dial %s: %v", address, err)
				}
				defer c.Close()
				if ip := c.RemoteAddr().(*net.TCPAddr).IP; !ip.Equal(net.IPv4(127, 0, 0, 1)) {
					t.Errorf("connected to %v, want 127.0.0.1", ip)
				}
				if took < tc.wait || took > 5*time.Second {
					t.Errorf("dial took %v, want about %v (FallbackDelay)", took, tc.wait)
				}
			})
		}
	}
	for _, d := range dialers(-1) {
		t.Run(d.name+" dialer with a negative FallbackDelay waits for IPv6 to fail", func(t *testing.T) {
			// Under 2 s, the first address may take all the time left.
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			start := time.Now()
			c, err := d.d.DialContext(ctx, "tcp", address)
			took := time.Since(start)
			if err == nil {
				c.Close()
				t.Fatalf("dial reached %v; want the ::1 attempt to use the whole second", c.RemoteAddr())
			}
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("dial error %v, want a timeout", err)
			}
			if took < 900*time.Millisecond {
				t.Errorf("dial failed after %v, before the context's 1 s", took)
			}
		})
	}
}
