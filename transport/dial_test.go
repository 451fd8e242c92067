//go:build linux

package transport_test

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"strconv"
	"testing"
	"time"

	"github.com/hubio/hubio/transport"
)

// TestDialRacesTheOtherFamily: a name that resolves to ::1, whose SYNs are
// dropped, and to 127.0.0.1, which accepts, connects after FallbackDelay
// (RFC 6555 Fast Fallback), not after the ::1 attempt's share of the
// timeout; a negative FallbackDelay tries the families one after the
// other. Package net's Dialer, given the same resolver, is the reference.
func TestDialRacesTheOtherFamily(t *testing.T) {
	h := newHub(t)
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
