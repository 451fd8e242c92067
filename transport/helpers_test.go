package transport_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

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

// dialAccept dials ln's address with dial and returns the dialed conn and
// the one ln accepted for it; both are closed at cleanup.
func dialAccept(t testing.TB, ln net.Listener, dial func(network, address string) (net.Conn, error)) (dialed, accepted net.Conn) {
	t.Helper()
	c, err := dial(ln.Addr().Network(), ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close() })
	return c, a
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
		// A waiter parks as "IO wait" (poller.ParkDesign "runtime") or on
		// its direction's channel ("channel").
		parked := bytes.Contains(g, []byte("[IO wait")) || bytes.Contains(g, []byte("[chan receive"))
		if parked && bytes.Contains(g, []byte("poller.(*Registration).Wait(")) {
			n++
		}
	}
	return n
}

// waitParked waits until at least n goroutines are parked on a hub, so that
// what the test does next happens to a blocked call.
func waitParked(t testing.TB, n int) {
	t.Helper()
	hubtest.Eventually(t, 5*time.Second, fmt.Sprintf("%d goroutines parked on a hub", n), func() bool { return parkedOnHub() >= n })
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

// makePipe returns two connected conns: c1 dialed, c2 accepted.
func makePipe(t *testing.T, h *poller.Hub, network string, hubListen, hubDial bool) (c1, c2 net.Conn, stop func(), err error) {
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	var ln net.Listener
	if hubListen {
		ln, err = transport.Listen(h, network, addr)
	} else {
		ln, err = net.Listen(network, addr)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	if hubDial {
		d := transport.Dialer{Hub: h}
		c1, err = d.DialContext(context.Background(), network, ln.Addr().String())
	} else {
		c1, err = net.Dial(network, ln.Addr().String())
	}
	a := <-ch
	if err != nil || a.err != nil {
		if c1 != nil {
			c1.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		if err == nil {
			err = a.err
		}
		return nil, nil, nil, err
	}
	return c1, a.c, func() { c1.Close(); a.c.Close() }, nil
}

// validOpError checks err as package net's error_test.go does: a
// *net.OpError with an Op, whose Source and Addr are nil or a non-nil
// *net.TCPAddr or *net.UnixAddr, and whose Err is one of the layers package
// net wraps: an *os.SyscallError around a syscall.Errno, a bare
// syscall.Errno, a standard sentinel, or one of net's address, network and
// resolver errors. It returns what is wrong, or nil.
func validOpError(err error) error {
	oe, ok := err.(*net.OpError)
	if !ok {
		return fmt.Errorf("got %T (%v), want a *net.OpError", err, err)
	}
	if oe.Op == "" {
		return fmt.Errorf("%v: empty Op", err)
	}
	for _, a := range []struct {
		field string
		addr  net.Addr
	}{{"Source", oe.Source}, {"Addr", oe.Addr}} {
		switch a := a.addr.(type) {
		case nil:
		case *net.TCPAddr:
			if a == nil {
				return fmt.Errorf("%v: %s is a nil *net.TCPAddr (want an untyped nil)", err, "Source or Addr")
			}
		case *net.UnixAddr:
			if a == nil {
				return fmt.Errorf("%v: %s is a nil *net.UnixAddr (want an untyped nil)", err, "Source or Addr")
			}
		case *net.UDPAddr, *net.IPAddr:
			if oe.Op != "listen" { // only listen's refusal names a datagram address
				return fmt.Errorf("%v: %s is a %T", err, "Source or Addr", a)
			}
		default:
			return fmt.Errorf("%v: unexpected address type %T", err, a)
		}
	}
	switch nested := oe.Err.(type) {
	case nil:
		return fmt.Errorf("%v: nil Err", err)
	case *net.OpError:
		return fmt.Errorf("%v: an *net.OpError wraps another", err)
	case *os.SyscallError:
		if _, ok := nested.Err.(syscall.Errno); !ok {
			return fmt.Errorf("%v: *os.SyscallError wraps %T, want a syscall.Errno", err, nested.Err)
		}
		return nil
	case syscall.Errno, *net.AddrError, net.UnknownNetworkError, *net.DNSError, *net.ParseError:
		return nil
	}
	for _, sentinel := range []error{
		net.ErrClosed, os.ErrDeadlineExceeded, context.DeadlineExceeded, context.Canceled,
		io.EOF, io.ErrUnexpectedEOF, errors.ErrUnsupported, transport.ErrNotSocket,
	} {
		if errors.Is(oe.Err, sentinel) {
			return nil
		}
	}
	return fmt.Errorf("%v: Err is %T (%v), not one of the layers package net wraps", err, oe.Err, oe.Err)
}

// nothingLeft waits until the process is back to fds open fds and
// goroutines goroutines, and checks that h has nothing registered: what a
// test of many connect/close cycles must leave.
func nothingLeft(t *testing.T, h *poller.Hub, fds, goroutines int) {
	t.Helper()
	hubtest.WaitFDs(t, fds)
	hubtest.Eventually(t, 10*time.Second, "goroutines to return to the baseline", func() bool { return runtime.NumGoroutine() <= goroutines })
	if got := h.Stats().Registered; got != 0 {
		t.Errorf("hub still has %d fds registered", got)
	}
}
