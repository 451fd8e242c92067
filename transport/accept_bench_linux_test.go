//go:build linux

package transport_test

import (
	"context"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// BenchmarkAcceptChurn measures how many connections a server accepts per
// second: 8 client goroutines dial (package net), the server accepts and
// closes each conn at once (so TIME_WAIT stays on the server's side, not
// on the clients' ephemeral ports), and the client reads EOF and closes.
// Use a fixed count, e.g. -benchtime 20000x.
//
//   - std: a package net listener, one accepting goroutine;
//   - hub: transport.Listen on one hub;
//   - group2-spread: the listening socket on one hub of a group of 2, each
//     conn registered with the hub the group picks (AcceptHubOn), as
//     grpcopt's Config.Group does;
//   - group2-reuseport: one SO_REUSEPORT listening socket per hub of a
//     group of 2, each with its own accepting goroutine (gnet's mode).
func BenchmarkAcceptChurn(b *testing.B) {
	b.Run("std", func(b *testing.B) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		churn(b, ln.Addr().String(), []func() (net.Conn, error){ln.Accept}, func() { ln.Close() })
	})
	b.Run("hub", func(b *testing.B) {
		h := hubtest.NewHub(b)
		ln, err := transport.Listen(h, "tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		churn(b, ln.Addr().String(), []func() (net.Conn, error){ln.Accept}, func() { ln.Close() })
	})
	b.Run("group2-spread", func(b *testing.B) {
		g := benchGroup(b, 2)
		ln, err := transport.Listen(g.Next(), "tcp", "127.0.0.1:0")
		if err != nil {
			b.Fatal(err)
		}
		hl := ln.(*transport.Listener)
		accept := func() (net.Conn, error) { return hl.AcceptHubOn(g.Next) }
		churn(b, ln.Addr().String(), []func() (net.Conn, error){accept}, func() { ln.Close() })
	})
	b.Run("group2-reuseport", func(b *testing.B) {
		g := benchGroup(b, 2)
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			}); err != nil {
				return err
			}
			return serr
		}}
		var accepts []func() (net.Conn, error)
		var lns []net.Listener
		addr := "127.0.0.1:0"
		for _, h := range g.Hubs() {
			std, err := lc.Listen(context.Background(), "tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			addr = std.Addr().String() // the others share its port
			ln, err := transport.WrapListener(h, std)
			std.Close() // WrapListener took a duplicate
			if err != nil {
				b.Fatal(err)
			}
			lns = append(lns, ln)
			accepts = append(accepts, ln.Accept)
		}
		churn(b, addr, accepts, func() {
			for _, ln := range lns {
				ln.Close()
			}
		})
	})
}

// benchGroup returns a group of n hubs, closed at cleanup.
func benchGroup(b *testing.B, n int) *poller.Group {
	b.Helper()
	g, err := poller.NewGroup(n)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { g.Close() })
	return g
}

// churn runs b.N connections to addr: each accept function gets its own
// accepting goroutine, and stop closes the listeners once all are in.
func churn(b *testing.B, addr string, accepts []func() (net.Conn, error), stop func()) {
	const dialers = 8
	var accepted atomic.Int64
	var wg sync.WaitGroup
	for _, accept := range accepts {
		wg.Go(func() {
			for {
				c, err := accept()
				if err != nil {
					return // the listener was closed
				}
				accepted.Add(1)
				c.Close()
			}
		})
	}
	b.ResetTimer()
	var next atomic.Int64
	var dials sync.WaitGroup
	for range dialers {
		dials.Go(func() {
			var buf [1]byte
			for next.Add(1) <= int64(b.N) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				c.Read(buf[:]) // EOF once the server has closed its end
				c.Close()
			}
		})
	}
	dials.Wait()
	b.StopTimer()
	stop()
	wg.Wait()
	if got := accepted.Load(); got != int64(b.N) && !b.Failed() {
		b.Errorf("accepted %d conns, dialed %d", got, b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
}
