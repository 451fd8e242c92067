//go:build unix

package grpcopt_test

import (
	"fmt"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

const (
	idleConnsWanted = 10000
	kib             = 1 << 10
	// idleHeapLimit is the most heap an idle conn of a hub server may hold:
	// well under grpc-go's 32 KiB read buffer, which a conn without the
	// pooled read path pins for its whole life.
	idleHeapLimit = 16 * kib
)

// TestIdleConnsPoolReadBuffers opens thousands of idle HTTP/2 conns to a
// gRPC server and measures the heap the server holds per conn (HeapInuse
// after GC): a server on a hub must stay under idleHeapLimit per conn, as
// its conns offer grpc-go the ReadOnReady path that returns the read
// buffer to a pool while a conn is idle. A package net server (which grpc-go
// also reads that way) is measured alongside for comparison, and a hub
// listener whose conns lack ReadOnReady calibrates the measurement: it must
// show the 32 KiB read buffer each of its conns pins.
//
// The clients are raw TCP conns that send the client preface, SETTINGS,
// the SETTINGS ack and a PING, read the PING ack and go quiet, so only the
// server side holds gRPC state. Every server shares its write buffers
// (grpc.SharedWriteBuffer), which grpc-go otherwise allocates per conn.
//
// RLIMIT_NOFILE's soft limit is raised to the hard limit; with fewer than
// about 2×10,000 fds available, fewer conns are opened (logged).
func TestIdleConnsPoolReadBuffers(t *testing.T) {
	if testing.Short() {
		t.Skip("opens thousands of conns; skipped with -short")
	}
	n := idleConnCount(t)
	t.Logf("%d idle conns per server", n)
	tests := []struct {
		name   string
		listen func(t *testing.T, h *poller.Hub) net.Listener
		opts   func(h *poller.Hub) []grpc.ServerOption
		check  func(t *testing.T, perConn float64)
	}{
		{
			name: "a server on hub conns without ReadOnReady (calibration)",
			listen: func(t *testing.T, h *poller.Hub) net.Listener {
				l, err := transport.Listen(h, "tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				return l
			},
			check: func(t *testing.T, perConn float64) {
				if perConn < 32*kib {
					t.Errorf("%.1f KiB per conn, want at least 32 KiB: the measurement does not see grpc-go's per-conn read buffer", perConn/kib)
				}
			},
		},
		{
			name:   "a package net server",
			listen: func(t *testing.T, _ *poller.Hub) net.Listener { return stdServer.listen(t, nil, "tcp", "127.0.0.1:0") },
			check:  func(*testing.T, float64) {},
		},
		{
			name:   "a server on a Listen listener",
			listen: func(t *testing.T, h *poller.Hub) net.Listener { return listenServer.listen(t, h, "tcp", "127.0.0.1:0") },
			check:  checkUnder(idleHeapLimit),
		},
		{
			name: "a server with ServerOption over a standard listener",
			listen: func(t *testing.T, _ *poller.Hub) net.Listener {
				return optionServer.listen(t, nil, "tcp", "127.0.0.1:0")
			},
			opts:  func(h *poller.Hub) []grpc.ServerOption { return optionServer.serverOptions(h, nil) },
			check: checkUnder(idleHeapLimit),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := hubtest.NewHubUnchecked(t)
			opts := []grpc.ServerOption{grpc.SharedWriteBuffer(true)}
			if tt.opts != nil {
				opts = append(opts, tt.opts(h)...)
			}
			lis := tt.listen(t, h)
			serveEcho(t, lis, opts...)

			before := heapInuse()
			start := time.Now()
			openIdleConns(t, lis.Addr().String(), n)
			setup := time.Since(start)
			perConn := float64(int64(heapInuse())-int64(before)) / float64(n)
			t.Logf("%.2f KiB of heap per idle conn (%d conns set up in %v)", perConn/kib, n, setup)
			tt.check(t, perConn)
		})
	}
}

// checkUnder returns a check that perConn stays under limit.
func checkUnder(limit float64) func(t *testing.T, perConn float64) {
	return func(t *testing.T, perConn float64) {
		t.Helper()
		if perConn >= limit {
			t.Errorf("%.1f KiB of heap per idle conn, want under %.0f KiB", perConn/kib, limit/kib)
		}
	}
}

// heapInuse returns HeapInuse after garbage has been collected (twice, so
// that sync.Pool victims are gone too).
func heapInuse() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// idleConnCount raises RLIMIT_NOFILE to its hard limit (restored when the
// test ends) and returns how many idle conns fit: each takes a client fd
// and a server fd.
func idleConnCount(t *testing.T) int {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatalf("getrlimit: %v", err)
	}
	if lim.Cur < lim.Max {
		saved := lim
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatalf("setrlimit: %v", err)
		}
		t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &saved) })
	}
	const spare = 256 // fds for everything else, and handshakes in flight
	n := min(idleConnsWanted, (int(lim.Cur)-hubtest.CountFDs(t)-spare)/2)
	if n < 1000 {
		t.Skipf("RLIMIT_NOFILE hard limit %d leaves room for %d conns only", lim.Max, n)
	}
	if n < idleConnsWanted {
		t.Logf("RLIMIT_NOFILE hard limit %d: %d conns instead of %d", lim.Max, n, idleConnsWanted)
	}
	return n
}

// openIdleConns opens n raw HTTP/2 conns to addr, each left idle once the
// server has answered its PING (so the server has read all it was sent);
// they are closed when the test ends.
func openIdleConns(t *testing.T, addr string, n int) {
	t.Helper()
	conns := make([]net.Conn, n)
	t.Cleanup(func() {
		for _, c := range conns {
			if c != nil {
				// Reset rather than leave thousands of ports in TIME_WAIT,
				// which slows down the next test's connects.
				c.(*net.TCPConn).SetLinger(0)
				c.Close()
			}
		}
	})
	const workers = 32
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < n; i += workers {
				c, err := http2Handshake(addr)
				if err != nil {
					errs <- fmt.Errorf("conn %d: %w", i, err)
					return
				}
				conns[i] = c
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

// http2Handshake dials addr and does the client's part of an HTTP/2
// connection setup, ending with a PING round trip.
func http2Handshake(addr string) (net.Conn, error) {
	c, err := net.Dial("tcp", addr)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(30 * time.Second))
	err = func() error {
		fr := http2.NewFramer(c, c)
		if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
			return err
		}
		if err := fr.WriteSettings(); err != nil {
			return err
		}
		for {
			f, err := fr.ReadFrame()
			if err != nil {
				return fmt.Errorf("reading the server's frames: %w", err)
			}
			switch f := f.(type) {
			case *http2.SettingsFrame:
				if !f.IsAck() {
					if err := fr.WriteSettingsAck(); err != nil {
						return err
					}
					if err := fr.WritePing(false, [8]byte{1}); err != nil {
						return err
					}
				}
			case *http2.PingFrame:
				if f.IsAck() {
					return nil
				}
			case *http2.GoAwayFrame:
				return fmt.Errorf("GOAWAY %v %q", f.ErrCode, f.DebugData())
			}
		}
	}()
	if err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}
