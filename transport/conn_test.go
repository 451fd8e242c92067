//go:build linux

package transport_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// ---------------------------------------------------------------------------
// Helpers

// pipe is makePipe that fails the test on error and closes both conns at
// cleanup: c1 is dialed, c2 accepted.
func pipe(t *testing.T, h *poller.Hub, network string, hubListen, hubDial bool) (c1, c2 net.Conn) {
	t.Helper()
	c1, c2, stop, err := makePipe(t, h, network, hubListen, hubDial)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stop)
	return c1, c2
}

// pairings are the ways a conn pair can be made, with at least one hub end.
var pairings = []struct {
	name               string
	hubListen, hubDial bool
}{
	{"hub dialer to hub listener", true, true},
	{"std dialer to hub listener", true, false},
	{"hub dialer to std listener", false, true},
}

// listenAddr returns an address to listen on for network: loopback TCP or a
// unix socket path in a fresh temporary directory.
func listenAddr(t testing.TB, network string) string {
	t.Helper()
	if network == "unix" {
		return filepath.Join(t.TempDir(), "s")
	}
	return "127.0.0.1:0"
}

// listen returns a hub listener on h, closed at cleanup.
func listen(t testing.TB, h *poller.Hub, network string) *transport.Listener {
	t.Helper()
	ln, err := transport.ListenHub(h, network, listenAddr(t, network))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// waitFor polls cond until it holds and fails the test if it does not
// within timeout.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// parkedOnHub counts goroutines parked in a hub wait (a blocked Read, Write,
// Accept or connect).
func parkedOnHub() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			buf = buf[:n]
			break
		}
		buf = make([]byte, 2*len(buf))
	}
	n := 0
	for _, g := range bytes.Split(buf, []byte("\n\n")) {
		if bytes.Contains(g, []byte("[chan receive")) && bytes.Contains(g, []byte("poller.(*Registration).Wait(")) {
			n++
		}
	}
	return n
}

// waitParked waits until at least n goroutines are parked on a hub, so that
// what the test does next happens to a blocked call.
func waitParked(t testing.TB, n int) {
	t.Helper()
	waitFor(t, 5*time.Second, fmt.Sprintf("%d goroutines parked on a hub", n), func() bool { return parkedOnHub() >= n })
}

// result is what a call run by async returned, and how long it took.
type result struct {
	n    int
	err  error
	took time.Duration
}

// async runs f in a new goroutine; its result arrives on the channel.
func async(f func() (int, error)) <-chan result {
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		n, err := f()
		ch <- result{n, err, time.Since(start)}
	}()
	return ch
}

// await returns the result of an async call, failing the test if it does
// not arrive within d.
func await(t testing.TB, ch <-chan result, d time.Duration, what string) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(d):
		t.Fatalf("%s did not return within %v", what, d)
		panic("unreachable")
	}
}

// acceptAsync runs ln.Accept in a goroutine; the accepted conn, if any, is
// closed at cleanup.
func acceptAsync(t testing.TB, ln net.Listener) <-chan result {
	t.Helper()
	var mu sync.Mutex
	var accepted net.Conn
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		if accepted != nil {
			accepted.Close()
		}
	})
	return async(func() (int, error) {
		c, err := ln.Accept()
		mu.Lock()
		accepted = c
		mu.Unlock()
		return 0, err
	})
}

// openFDs counts the process's open fds.
func openFDs(t testing.TB) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// waitFDs waits until the process has no more than want open fds.
func waitFDs(t testing.TB, want int) {
	t.Helper()
	waitFor(t, 10*time.Second, fmt.Sprintf("open fds to return to %d", want), func() bool { return openFDs(t) <= want })
}

// checkOpErr fails the test unless err is a valid *net.OpError (see
// validOpError) with op, whose error matches target.
func checkOpErr(t testing.TB, err error, op string, target error) *net.OpError {
	t.Helper()
	if verr := validOpError(err); verr != nil {
		t.Fatal(verr)
	}
	oe := err.(*net.OpError)
	if oe.Op != op {
		t.Errorf("got Op %q in %v, want %q", oe.Op, err, op)
	}
	if target != nil && !errors.Is(err, target) {
		t.Errorf("got error %v, want one matching %v", err, target)
	}
	return oe
}

// checkTimeout fails the test unless err is a deadline error as package net
// reports one.
func checkTimeout(t testing.TB, err error, op string) {
	t.Helper()
	checkOpErr(t, err, op, os.ErrDeadlineExceeded)
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("got error %v, want a net.Error whose Timeout() is true", err)
	}
}

// fillWrite writes into c until the socket buffers are full (the peer does
// not read) and returns the number of bytes written.
func fillWrite(t testing.TB, c net.Conn) int {
	t.Helper()
	buf := make([]byte, 64<<10)
	total := 0
	for {
		if err := c.SetWriteDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		n, err := c.Write(buf)
		total += n
		if err != nil {
			if !errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("filling the socket buffer: %v", err)
			}
			if err := c.SetWriteDeadline(time.Time{}); err != nil {
				t.Fatal(err)
			}
			return total
		}
	}
}

// readToEOF reads c into w until io.EOF, which it does not return as an
// error. A Read that returns no bytes and no error fails with
// io.ErrNoProgress rather than spinning, as io.Copy would.
func readToEOF(w io.Writer, c net.Conn, buf []byte) (int64, error) {
	var total int64
	for {
		n, err := c.Read(buf)
		w.Write(buf[:n])
		total += int64(n)
		switch {
		case err == io.EOF:
			return total, nil
		case err != nil:
			return total, err
		case n == 0:
			return total, io.ErrNoProgress
		}
	}
}

// readAll is io.ReadAll over readToEOF.
func readAll(c net.Conn) ([]byte, error) {
	var b bytes.Buffer
	_, err := readToEOF(&b, c, make([]byte, 32<<10))
	return b.Bytes(), err
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

// ---------------------------------------------------------------------------
// Listener Close unblocks Accept.

func TestListenerCloseUnblocksAccept(t *testing.T) {
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Hub Close fails every blocked call.

func TestHubCloseFailsEveryBlockedCall(t *testing.T) {
	h := newHub(t)
	ln := listen(t, h, "tcp")
	peer, err := net.Dial("tcp", ln.Addr().String()) // never reads, never writes
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { peer.Close() })
	c, err := ln.AcceptHub()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })

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
	_, err = c.Read(make([]byte, 1))
	checkOpErr(t, err, "read", net.ErrClosed)

	// Close still works and releases the fds: the peer sees every byte the
	// blocked Write got out, then EOF.
	before := openFDs(t)
	if err := c.Close(); err != nil {
		t.Fatalf("conn Close after hub Close: %v", err)
	}
	if err := ln.Close(); err != nil {
		t.Fatalf("listener Close after hub Close: %v", err)
	}
	if got := openFDs(t); got != before-2 {
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

// ---------------------------------------------------------------------------
// Full-duplex bulk transfer.

func TestFullDuplexTransferKeepsEveryByte(t *testing.T) {
	const size = 64 << 20
	h := newHub(t)
	for _, p := range pairings {
		t.Run(p.name+" moves 64 MiB each way at once", func(t *testing.T) {
			c1, c2 := pipe(t, h, "tcp", p.hubListen, p.hubDial)
			deadline := time.Now().Add(30 * time.Second)
			for _, c := range []net.Conn{c1, c2} {
				if err := c.SetDeadline(deadline); err != nil {
					t.Fatal(err)
				}
			}
			type sums struct {
				sent, got [sha256.Size]byte
				n         int64
				err       error
			}
			done := make(chan sums, 2)
			stream := func(from, to net.Conn, seed uint64) {
				var s sums
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					h := sha256.New()
					s.n, s.err = readToEOF(h, to, make([]byte, 32<<10))
					copy(s.got[:], h.Sum(nil))
				}()
				var werr error
				rng := rand.New(rand.NewPCG(seed, seed))
				src := rand.NewChaCha8([32]byte{byte(seed)})
				hw := sha256.New()
				buf := make([]byte, 256<<10)
				for left := size; left > 0 && werr == nil; {
					chunk := buf[:min(left, 1+rng.IntN(len(buf)))]
					src.Read(chunk)
					hw.Write(chunk)
					var n int
					n, werr = from.Write(chunk)
					if werr == nil && n != len(chunk) {
						werr = fmt.Errorf("short write %d of %d with no error", n, len(chunk))
					}
					left -= len(chunk)
				}
				copy(s.sent[:], hw.Sum(nil))
				if werr == nil {
					werr = from.(interface{ CloseWrite() error }).CloseWrite()
				} else {
					from.Close() // end the reader's wait at once
				}
				wg.Wait()
				if s.err == nil {
					s.err = werr
				}
				done <- s
			}
			go stream(c1, c2, 1)
			go stream(c2, c1, 2)
			for range 2 {
				s := <-done
				if s.err != nil {
					t.Fatal(s.err)
				}
				if s.n != size {
					t.Errorf("reader got %d bytes before EOF, want %d", s.n, size)
				}
				if s.sent != s.got {
					t.Errorf("SHA-256 of the bytes read %x differs from that of the bytes written %x", s.got, s.sent)
				}
			}
		})
	}
}

// ---------------------------------------------------------------------------
// Half-close.

func TestHalfClose(t *testing.T) {
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Deadlines.

func TestDeadlines(t *testing.T) {
	h := newHub(t)
	hubPair := func(t *testing.T) (*transport.Conn, *transport.Conn) {
		t.Helper()
		c1, c2 := pipe(t, h, "tcp", true, true)
		return c1.(*transport.Conn), c2.(*transport.Conn)
	}

	t.Run("a deadline in the past fails Read and Write at once", func(t *testing.T) {
		c, peer := hubPair(t)
		if _, err := peer.Write([]byte("data waiting")); err != nil {
			t.Fatal(err)
		}
		if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		r := await(t, async(func() (int, error) { return c.Read(make([]byte, 64)) }), time.Second, "Read past its deadline")
		checkTimeout(t, r.err, "read")
		if r.n != 0 {
			t.Errorf("Read past its deadline returned %d bytes", r.n)
		}
		w := await(t, async(func() (int, error) { return c.Write([]byte("x")) }), time.Second, "Write past its deadline")
		checkTimeout(t, w.err, "write")
		if w.n != 0 {
			t.Errorf("Write past its deadline wrote %d bytes", w.n)
		}
		// Clearing the deadline makes the conn usable again; the data is there.
		if err := c.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "data waiting" {
			t.Errorf("Read after clearing the deadline = %q, %v; want %q", buf[:n], err, "data waiting")
		}
	})

	t.Run("a read deadline in the future fires no earlier than asked", func(t *testing.T) {
		c, _ := hubPair(t)
		const d = 100 * time.Millisecond
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(d)); err != nil {
			t.Fatal(err)
		}
		r := await(t, async(func() (int, error) { return c.Read(make([]byte, 1)) }), 5*time.Second, "Read with a deadline")
		took := time.Since(start)
		checkTimeout(t, r.err, "read")
		if took < d {
			t.Errorf("Read timed out after %v, before its deadline %v", took, d)
		}
	})

	t.Run("a far read deadline moved near while Read is blocked fires", func(t *testing.T) {
		c, _ := hubPair(t)
		if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		reads := async(func() (int, error) { return c.Read(make([]byte, 1)) })
		waitParked(t, 1)
		moved := time.Now()
		if err := c.SetReadDeadline(moved.Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		r := await(t, reads, 5*time.Second, "Read after its deadline moved near")
		checkTimeout(t, r.err, "read")
		if took := time.Since(moved); took < 50*time.Millisecond {
			t.Errorf("Read timed out %v after the move, before the new deadline", took)
		}
	})

	for _, to := range []struct {
		name string
		t    func() time.Time
	}{
		{"far", func() time.Time { return time.Now().Add(time.Hour) }},
		{"zero", func() time.Time { return time.Time{} }},
	} {
		t.Run("a near read deadline moved "+to.name+" while Read is blocked does not fire", func(t *testing.T) {
			c, peer := hubPair(t)
			const near = time.Second
			old := time.Now().Add(near)
			if err := c.SetReadDeadline(old); err != nil {
				t.Fatal(err)
			}
			reads := async(func() (int, error) {
				b := make([]byte, 16)
				n, err := c.Read(b)
				if err == nil && string(b[:n]) != "late data" {
					err = fmt.Errorf("read %q, want %q", b[:n], "late data")
				}
				return n, err
			})
			waitParked(t, 1)
			if err := c.SetReadDeadline(to.t()); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(old) {
				t.Fatalf("the deadline was moved only after it had passed: the machine is too slow for this test")
			}
			select {
			case r := <-reads:
				t.Fatalf("Read returned (%d, %v) at the old deadline", r.n, r.err)
			case <-time.After(time.Until(old) + 300*time.Millisecond):
			}
			if _, err := peer.Write([]byte("late data")); err != nil {
				t.Fatal(err)
			}
			r := await(t, reads, 5*time.Second, "Read after data arrived")
			if r.err != nil {
				t.Fatalf("Read: %v", r.err)
			}
		})
	}

	t.Run("a write deadline fails a Write blocked on a peer that does not read", func(t *testing.T) {
		c, _ := hubPair(t)
		const d = 200 * time.Millisecond
		start := time.Now()
		if err := c.SetWriteDeadline(start.Add(d)); err != nil {
			t.Fatal(err)
		}
		const size = 64 << 20
		w := await(t, async(func() (int, error) { return c.Write(make([]byte, size)) }), 5*time.Second, "Write with a deadline")
		checkTimeout(t, w.err, "write")
		if took := time.Since(start); took < d {
			t.Errorf("Write timed out after %v, before its deadline %v", took, d)
		}
		if w.n <= 0 || w.n >= size {
			t.Errorf("Write reported %d bytes written, want some but not all of %d", w.n, size)
		}
	})

	t.Run("a far write deadline moved near while Write is blocked fires", func(t *testing.T) {
		c, _ := hubPair(t)
		if err := c.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		writes := async(func() (int, error) { return c.Write(make([]byte, 64<<20)) })
		waitParked(t, 1)
		if err := c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		w := await(t, writes, 5*time.Second, "Write after its deadline moved near")
		checkTimeout(t, w.err, "write")
	})

	t.Run("an accept deadline fails Accept", func(t *testing.T) {
		ln := listen(t, h, "tcp")
		if err := ln.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		r := await(t, acceptAsync(t, ln), 5*time.Second, "Accept with a deadline")
		checkTimeout(t, r.err, "accept")
	})
}

// ---------------------------------------------------------------------------
// Dial errors.

func TestDialClosedPortIsRefused(t *testing.T) {
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Cancelling a dial that hangs.

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
	h := newHub(t)
	addr := hangingAddr(t)
	d := transport.Dialer{Hub: h}

	t.Run("cancelling the context aborts the dial", func(t *testing.T) {
		before := openFDs(t)
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
		waitFDs(t, before)
	})

	t.Run("Dialer.Timeout aborts the dial with a timeout error", func(t *testing.T) {
		before := openFDs(t)
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
		waitFDs(t, before)
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
	h := newHub(t)
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
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Host names.

func TestDialLocalhost(t *testing.T) {
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Addresses and Listen.

func TestAddressesMatchPackageNet(t *testing.T) {
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Socket options.

func TestTCPConnsHaveNoDelayAndKeepAlive(t *testing.T) {
	h := newHub(t)
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

// ---------------------------------------------------------------------------
// Adopting std conns and listeners.

// exchange checks that a and b carry bytes both ways.
func exchange(t testing.TB, a, b net.Conn) {
	t.Helper()
	for _, c := range []net.Conn{a, b} {
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct{ from, to net.Conn }{{a, b}, {b, a}} {
		msg := fmt.Sprintf("from %v to %v", d.from.LocalAddr(), d.from.RemoteAddr())
		if _, err := d.from.Write([]byte(msg)); err != nil {
			t.Fatalf("Write: %v", err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(d.to, buf); err != nil || string(buf) != msg {
			t.Fatalf("read %q, %v; want %q", buf, err, msg)
		}
	}
}

func TestAdoptedConnOutlivesTheOriginal(t *testing.T) {
	h := newHub(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run("NewConn of a std "+network+" conn works after the original is closed", func(t *testing.T) {
			std, peer := pipe(t, h, network, false, false)
			hc, err := transport.NewConn(h, std)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { hc.Close() })
			if err := std.Close(); err != nil {
				t.Fatal(err)
			}
			if hc.(*transport.Conn).Hub() != h {
				t.Error("adopted conn is not on the hub asked for")
			}
			if !reflect.DeepEqual(hc.LocalAddr(), std.LocalAddr()) || !reflect.DeepEqual(hc.RemoteAddr(), std.RemoteAddr()) {
				t.Errorf("adopted conn addresses %v→%v, original %v→%v", hc.LocalAddr(), hc.RemoteAddr(), std.LocalAddr(), std.RemoteAddr())
			}
			exchange(t, hc, peer)
			// Closing the adopted conn is what ends the connection.
			if err := hc.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("peer Read after the adopted conn closed = %d, %v; want 0, io.EOF", n, err)
			}
		})
		t.Run("WrapListener of a std "+network+" listener accepts after the original is closed", func(t *testing.T) {
			std, err := net.Listen(network, listenAddr(t, network))
			if err != nil {
				t.Fatal(err)
			}
			if ul, ok := std.(*net.UnixListener); ok {
				ul.SetUnlinkOnClose(false) // keep the path for the adopted listener
			}
			ln, err := transport.WrapListener(h, std)
			if err != nil {
				std.Close()
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			if err := std.Close(); err != nil {
				t.Fatal(err)
			}
			if ln.(*transport.Listener).Hub() != h {
				t.Error("wrapped listener is not on the hub asked for")
			}
			if !reflect.DeepEqual(ln.Addr(), std.Addr()) {
				t.Errorf("wrapped listener Addr %#v, original %#v", ln.Addr(), std.Addr())
			}
			acc := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				acc <- c
			}()
			c, err := (&transport.Dialer{Hub: h}).Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var s net.Conn
			select {
			case s = <-acc:
			case <-time.After(5 * time.Second):
				t.Fatal("Accept on the wrapped listener did not return")
			}
			if s == nil {
				t.Fatal("Accept on the wrapped listener failed")
			}
			t.Cleanup(func() { s.Close() })
			if _, ok := s.(*transport.Conn); !ok {
				t.Errorf("accepted a %T, want a *transport.Conn", s)
			}
			exchange(t, c, s)
		})
	}
	t.Run("WrapListener moves a hub listener onto another hub", func(t *testing.T) {
		h2 := newHub(t)
		ln1 := listen(t, h, "tcp")
		ln, err := transport.WrapListener(h2, ln1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if err := ln1.Close(); err != nil {
			t.Fatal(err)
		}
		if got := ln.(*transport.Listener).Hub(); got != h2 {
			t.Errorf("wrapped listener is on hub %p, want %p", got, h2)
		}
		acc := acceptAsync(t, ln)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if r := await(t, acc, 5*time.Second, "Accept on the moved listener"); r.err != nil {
			t.Fatal(r.err)
		}
	})
	t.Run("NewConn of a hub conn on the same hub returns it as it is", func(t *testing.T) {
		c1, _ := pipe(t, h, "tcp", true, true)
		got, err := transport.NewConn(h, c1)
		if err != nil || got != c1 {
			t.Errorf("NewConn = %p, %v; want %p", got, err, c1)
		}
	})
}

// ---------------------------------------------------------------------------
// Connect/close cycles leak nothing.

func TestConnectCloseCyclesLeakNothing(t *testing.T) {
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	h := newHub(t)
	goroutines := runtime.NumGoroutine()
	fds := openFDs(t)
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
	waitFDs(t, fds)
	waitFor(t, 10*time.Second, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= goroutines })
	if got := h.Stats().Registered; got != 0 {
		t.Errorf("hub still has %d fds registered", got)
	}
}

// ---------------------------------------------------------------------------
// Close racing every other call.

func TestCloseRacesReadWriteAndSetDeadline(t *testing.T) {
	iterations := 2000
	if testing.Short() {
		iterations = 50
	}
	h := newHub(t)
	fds := openFDs(t)
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
	waitFDs(t, fds)
}
