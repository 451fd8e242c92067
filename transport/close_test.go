//go:build linux

package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

func TestHubCloseFailsEveryBlockedCall(t *testing.T) {
	h := hubtest.NewHub(t)
	ln := listen(t, h, "tcp")
	peer, c := dialAccept(t, ln, net.Dial) // peer never reads, never writes

	filled := fillWrite(t, c)
	reads := async(func() (int, error) { return c.Read(make([]byte, 1)) })
	writes := async(func() (int, error) { return c.Write(make([]byte, 64<<20)) })
	accepts := acceptAsync(t, ln)
	waitParked(t, 3)

	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	r := await(t, reads, time.Second, "Read after hub Close")
	checkOpErr(t, r.err, "read", net.ErrClosed)
	w := await(t, writes, time.Second, "Write after hub Close")
	checkOpErr(t, w.err, "write", net.ErrClosed)
	if w.n >= 64<<20 {
		t.Fatalf("Write wrote all %d bytes to a peer that does not read", w.n)
	}
	a := await(t, accepts, time.Second, "Accept after hub Close")
	checkOpErr(t, a.err, "accept", net.ErrClosed)

	// Calls made after the hub closed fail the same way, without blocking.
	_, err := c.Read(make([]byte, 1))
	checkOpErr(t, err, "read", net.ErrClosed)

	// Close still works and releases the fds: the peer sees every byte the
	// blocked Write got out, then EOF.
	before := hubtest.CountFDs(t)
	if err := c.Close(); err != nil {
		t.Fatalf("conn Close after hub Close: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("listener Close after hub Close: %v", err)
	}
	if got := hubtest.CountFDs(t); got != before-2 {
		t.Errorf("open fds went from %d to %d closing a conn and a listener, want %d", before, got, before-2)
	}
	if err := peer.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	n, err := readToEOF(io.Discard, peer, make([]byte, 64<<10))
	if err != nil {
		t.Fatalf("peer read after hub conn Close: %v", err)
	}
	if want := int64(filled + w.n); n != want {
		t.Errorf("peer read %d bytes before EOF, want the %d written (%d before the blocked Write, %d by it)", n, want, filled, w.n)
	}
}

func TestHalfClose(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, network := range []string{"tcp", "unix"} {
		for _, p := range pairings {
			for _, dialedCloses := range []bool{true, false} {
				who := "accepted"
				if dialedCloses {
					who = "dialed"
				}
				t.Run(fmt.Sprintf("%s %s: CloseWrite on the %s side lets the peer read EOF and answer", network, p.name, who), func(t *testing.T) {
					c1, c2 := pipe(t, h, network, p.hubListen, p.hubDial)
					closer, other := c1, c2
					if !dialedCloses {
						closer, other = c2, c1
					}
					for _, c := range []net.Conn{c1, c2} {
						if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
							t.Fatal(err)
						}
					}
					request := bytes.Repeat([]byte("request "), 4096)
					if _, err := closer.Write(request); err != nil {
						t.Fatal(err)
					}
					if err := closer.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
						t.Fatalf("CloseWrite: %v", err)
					}
					got, err := readAll(other)
					if err != nil {
						t.Fatalf("peer reading to EOF: %v", err)
					}
					if !bytes.Equal(got, request) {
						t.Fatalf("peer read %d bytes before EOF, want the %d written", len(got), len(request))
					}
					// Read again: still EOF.
					if n, err := other.Read(make([]byte, 1)); n != 0 || err != io.EOF {
						t.Errorf("second Read after EOF = %d, %v; want 0, io.EOF", n, err)
					}
					if _, err := other.Write([]byte("response")); err != nil {
						t.Fatalf("peer writing back after reading EOF: %v", err)
					}
					if err := other.Close(); err != nil {
						t.Fatal(err)
					}
					got, err = readAll(closer)
					if err != nil {
						t.Fatalf("half-closed side reading the answer: %v", err)
					}
					if string(got) != "response" {
						t.Errorf("half-closed side read %q, want %q", got, "response")
					}
					// Writing after CloseWrite fails.
					if _, err := closer.Write([]byte("x")); err == nil {
						t.Error("Write after CloseWrite succeeded")
					}
				})
			}
		}
		for _, dialed := range []bool{true, false} {
			who := "accepted"
			if dialed {
				who = "dialed"
			}
			t.Run(fmt.Sprintf("%s CloseRead on the %s side makes its Read return EOF and leaves it writing", network, who), func(t *testing.T) {
				c1, c2 := pipe(t, h, network, true, true)
				c, peer := c1.(*transport.Conn), c2
				if !dialed {
					c, peer = c2.(*transport.Conn), c1
				}
				if err := c.CloseRead(); err != nil {
					t.Fatalf("CloseRead: %v", err)
				}
				for range 2 {
					r := await(t, async(func() (int, error) { return c.Read(make([]byte, 8)) }), 5*time.Second, "Read after CloseRead")
					if r.n != 0 || r.err != io.EOF {
						t.Errorf("Read after CloseRead = %d, %v; want 0, io.EOF", r.n, r.err)
					}
				}
				if _, err := c.Write([]byte("still writing")); err != nil {
					t.Fatalf("Write after CloseRead: %v", err)
				}
				buf := make([]byte, len("still writing"))
				if err := peer.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "still writing" {
					t.Errorf("peer read %q, %v; want %q", buf, err, "still writing")
				}
			})
		}
		t.Run(network+" CloseRead wakes a blocked Read with EOF", func(t *testing.T) {
			c1, _ := pipe(t, h, network, true, true)
			c := c1.(*transport.Conn)
			reads := async(func() (int, error) { return c.Read(make([]byte, 8)) })
			waitParked(t, 1)
			if err := c.CloseRead(); err != nil {
				t.Fatalf("CloseRead: %v", err)
			}
			r := await(t, reads, 5*time.Second, "blocked Read after CloseRead")
			if r.n != 0 || r.err != io.EOF {
				t.Errorf("blocked Read after CloseRead = %d, %v; want 0, io.EOF", r.n, r.err)
			}
		})
	}
}

func TestConnectCloseCyclesLeakNothing(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	h := hubtest.NewHub(t)
	goroutines := runtime.NumGoroutine()
	fds := hubtest.CountFDs(t)
	ln := listen(t, h, "tcp")
	addr := ln.Addr().String()
	d := transport.Dialer{Hub: h}
	start := time.Now()
	for i := range cycles {
		c, err := d.DialHub(context.Background(), "tcp", addr)
		if err != nil {
			t.Fatalf("cycle %d: dial: %v", i, err)
		}
		s, err := ln.AcceptHub()
		if err != nil {
			c.Close()
			t.Fatalf("cycle %d: accept: %v", i, err)
		}
		// The server closes first, so TIME_WAIT stays on the listener's
		// port and never ties up ephemeral ports.
		if err := s.Close(); err != nil {
			t.Fatalf("cycle %d: close accepted: %v", i, err)
		}
		if err := c.Close(); err != nil {
			t.Fatalf("cycle %d: close dialed: %v", i, err)
		}
	}
	t.Logf("%d connect/accept/close cycles in %v", cycles, time.Since(start))
	if err := ln.Close(); err != nil {
		t.Fatal(err)
	}
	nothingLeft(t, h, fds, goroutines)
}

func TestCloseRacesReadWriteAndSetDeadline(t *testing.T) {
	iterations := 2000
	if testing.Short() {
		iterations = 50
	}
	h := hubtest.NewHub(t)
	fds := hubtest.CountFDs(t)
	for i := range iterations {
		c1, _, stop, err := makePipe(t, h, "tcp", true, true)
		if err != nil {
			t.Fatal(err)
		}
		c := c1.(*transport.Conn)
		start := make(chan struct{})
		type outcome struct {
			who string
			err error
		}
		out := make(chan outcome, 8)
		run := func(who string, f func() error) {
			go func() {
				<-start
				out <- outcome{who, f()}
			}()
		}
		// Loops end at the first error that is not a timeout; that error
		// must be net.ErrClosed.
		loop := func(f func() error) func() error {
			return func() error {
				for {
					if err := f(); err != nil && !errors.Is(err, os.ErrDeadlineExceeded) {
						return err
					}
					runtime.Gosched()
				}
			}
		}
		buf := make([]byte, 256<<10)
		for r := range 2 {
			rbuf := make([]byte, 4096)
			run(fmt.Sprint("reader ", r), loop(func() error { _, err := c.Read(rbuf); return err }))
			run(fmt.Sprint("writer ", r), loop(func() error { _, err := c.Write(buf); return err }))
			run(fmt.Sprint("deadline setter ", r), loop(func() error {
				switch rand.IntN(3) {
				case 0:
					return c.SetDeadline(time.Now().Add(-time.Second))
				case 1:
					return c.SetDeadline(time.Now().Add(time.Duration(rand.IntN(1000)) * time.Microsecond))
				}
				return c.SetDeadline(time.Time{})
			}))
			run(fmt.Sprint("closer ", r), func() error {
				for range rand.IntN(50) {
					runtime.Gosched()
				}
				return c.Close()
			})
		}
		close(start)
		closed := 0
		timeout := time.After(10 * time.Second)
		for range 8 {
			select {
			case o := <-out:
				switch {
				case strings.HasPrefix(o.who, "closer") && o.err == nil:
					closed++
				case !errors.Is(o.err, net.ErrClosed):
					t.Errorf("iteration %d: %s returned %v, want net.ErrClosed", i, o.who, o.err)
				}
				if o.err != nil {
					if _, ok := o.err.(*net.OpError); !ok {
						t.Errorf("iteration %d: %s returned %T, want *net.OpError", i, o.who, o.err)
					}
				}
			case <-timeout:
				stop()
				t.Fatalf("iteration %d: calls still blocked 10s after Close", i)
			}
		}
		if closed != 1 {
			t.Errorf("iteration %d: %d of 2 concurrent Close calls succeeded, want exactly 1", i, closed)
		}
		stop()
		if t.Failed() {
			break
		}
	}
	hubtest.WaitFDs(t, fds)
}

// TestDroppedConnsAreClosedByTheCollector: a conn or listener dropped
// unclosed is closed once garbage-collected, as package net's are: its fd
// is closed and its registration leaves the hub, which must not keep it
// reachable.
func TestDroppedConnsAreClosedByTheCollector(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(t *testing.T, h *poller.Hub) // makes one thing and drops it
	}{
		{"a dialed conn", func(t *testing.T, h *poller.Hub) {
			ln := listen(t, h, "tcp")
			if _, err := (&transport.Dialer{Hub: h}).Dial("tcp", ln.Addr().String()); err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			ln.Close()
		}},
		{"an accepted conn", func(t *testing.T, h *poller.Hub) {
			ln := listen(t, h, "unix")
			c, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := ln.Accept(); err != nil {
				t.Fatal(err)
			}
			ln.Close()
		}},
		{"a moved conn with a deadline set", func(t *testing.T, h *poller.Hub) {
			c1, c2 := pipe(t, h, "tcp", false, false)
			defer c1.Close()
			defer c2.Close()
			c, err := transport.NewConn(h, c1)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil { // a timer on the hub
				t.Fatal(err)
			}
		}},
		{"a listener", func(t *testing.T, h *poller.Hub) {
			if _, err := transport.Listen(h, "tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name+" is closed", func(t *testing.T) {
			h := hubtest.NewHub(t)
			before := hubtest.CountFDs(t)
			tc.drop(t, h)
			hubtest.Eventually(t, 10*time.Second, "the collector to close the dropped fd", func() bool {
				runtime.GC()
				return h.Stats().Registered == 0 && hubtest.CountFDs(t) <= before
			})
		})
	}
	t.Run("a conn in use is not closed", func(t *testing.T) {
		h := hubtest.NewHub(t)
		c1, c2 := pipe(t, h, "tcp", true, true)
		for range 3 {
			runtime.GC()
		}
		if _, err := c1.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := c2.Read(b); err != nil {
			t.Fatal(err)
		}
		if got := h.Stats().Registered; got != 2 {
			t.Fatalf("%d registrations, want 2", got)
		}
	})
}

// TestCloseWaitsForOperationsInsideTheDirectionLocks: reads and writes
// hold their direction's lock instead of a reference on the fd, so Close
// must wait for an operation inside either lock before it closes the
// socket, or that operation would use a closed (or reused) fd number. In
// each direction alone, a raw operation stops inside the lock, sees the
// conn marked closed, gives a wrong Close every chance to finish, and
// checks its fd number: it must still be open, and Close must return only
// once the operation has left.
func TestCloseWaitsForOperationsInsideTheDirectionLocks(t *testing.T) {
	for _, dir := range []string{"read", "write"} {
		t.Run(dir, func(t *testing.T) {
			h := hubtest.NewHub(t)
			c, peer := hubtest.ConnPair(t, h, "tcp")
			defer peer.Close()
			raw, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			do := raw.Read
			if dir == "write" {
				do = raw.Write
			}
			fdOpen := func(fd uintptr) bool {
				var st syscall.Stat_t
				return syscall.Fstat(int(fd), &st) == nil
			}
			closeReturned := make(chan error, 1)
			inside, release := make(chan struct{}), make(chan struct{})
			bad := make(chan string, 8)
			opDone := make(chan error, 1)
			go func() {
				called := false
				opDone <- do(func(fd uintptr) bool { // rawIO calls f at once, under the lock
					if called {
						return true
					}
					called = true
					if !fdOpen(fd) {
						bad <- "fd closed on entry"
					}
					close(inside)
					<-release
					// Close has marked the conn closed; one that did not wait
					// for this lock has closed the fd by now or will within
					// the bound.
					select {
					case err := <-closeReturned:
						closeReturned <- err
						bad <- "Close returned while the operation was inside the lock"
					case <-time.After(100 * time.Millisecond):
					}
					if !fdOpen(fd) {
						bad <- "fd closed while the operation was inside the lock"
					}
					return true
				})
			}()
			<-inside
			go func() { closeReturned <- c.Close() }()
			// Close has marked the conn closed once a new operation fails.
			if !hubtest.WaitFor(10*time.Second, func() bool { return c.SetReadDeadline(time.Time{}) != nil }) {
				t.Fatal("Close did not mark the conn closed in 10s")
			}
			close(release)
			if err := <-opDone; err != nil {
				t.Errorf("raw %s: %v", dir, err)
			}
			if err := <-closeReturned; err != nil {
				t.Fatalf("Close: %v", err)
			}
			close(bad)
			for msg := range bad {
				t.Error(msg)
			}
			if _, err := c.Read(make([]byte, 1)); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read after Close: %v, want net.ErrClosed", err)
			}
			if _, err := c.Write([]byte("y")); !errors.Is(err, net.ErrClosed) {
				t.Errorf("Write after Close: %v, want net.ErrClosed", err)
			}
		})
	}
}
