package transport_test

import (
	"bytes"
	"errors"
	"io"
	"net"
	"os"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// These tests cover the short-read rule (transport's netFD.drained): after
// a read(2) on a TCP socket returns fewer bytes than asked for, the next
// Read waits for the hub's next event instead of trying a read that would
// only say EAGAIN, and still never misses data, EOF, an error or the data
// after an urgent mark.

// drainPair returns a conn accepted on a hub of its own and its package-net
// peer, both closed at cleanup.
func drainPair(t *testing.T, network string) (*transport.Conn, net.Conn, *poller.Hub) {
	t.Helper()
	h := hubtest.NewHub(t)
	ln := listen(t, h, network)
	peer, c := dialAccept(t, ln, net.Dial)
	return c.(*transport.Conn), peer, h
}

// hubCaughtUp returns once h has delivered every event of what is already
// in its sockets: a callback runs after the events harvested with the
// wake-up that brought it (poller's loop), and a second round trip makes
// sure that wake-up was signalled after the caller's data arrived, not
// coalesced into an earlier one.
func hubCaughtUp(t *testing.T, h *poller.Hub) {
	t.Helper()
	for range 2 {
		done := make(chan struct{})
		if err := h.Schedule(func() { close(done) }); err != nil {
			t.Fatal(err)
		}
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("hub callback did not run in 10s")
		}
	}
}

// waitQueued waits until c's socket holds at least n bytes to read, as the
// kernel counts them (SIOCINQ: up to an urgent mark on TCP).
func waitQueued(t *testing.T, c *transport.Conn, n int) {
	t.Helper()
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	hubtest.Eventually(t, 10*time.Second, "bytes queued on the socket", func() bool {
		var q int
		rc.Control(func(fd uintptr) { q, _ = unix.IoctlGetInt(int(fd), unix.SIOCINQ) })
		return q >= n
	})
}

// readWithin reads once from c into a buffer larger than anything the test
// sends, failing the test if Read has not returned in 10s (a Read that
// waits for an event that never comes).
func readWithin(t *testing.T, c *transport.Conn) (string, error) {
	t.Helper()
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 1024)
	n, err := c.Read(buf)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatal("Read waited 10s for an event that never came")
	}
	return string(buf[:n]), err
}

func TestReadAfterAShortReadWaitsWithoutAReadSyscall(t *testing.T) {
	var reads atomic.Int64
	transport.CountReads(t, &reads)
	c, peer, h := drainPair(t, "tcp")

	// "a" is in the socket and its event delivered before Read starts, so
	// Read's Prepare drops that readiness and its read(2) takes "a": fewer
	// bytes than asked for.
	if _, err := peer.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, c, 1)
	hubCaughtUp(t, h)
	if got, err := readWithin(t, c); got != "a" || err != nil {
		t.Fatalf("first Read: %q, %v; want \"a\"", got, err)
	}

	// The next Read parks on the hub without a read(2) (which could only
	// say EAGAIN), then reads "b" once it arrives: one syscall, not two.
	reads.Store(0)
	if err := c.SetReadDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	ch := async(func() (int, error) {
		buf := make([]byte, 1024)
		n, err := c.Read(buf)
		if err == nil && string(buf[:n]) != "b" {
			err = errors.New("second Read got " + string(buf[:n]) + ", want b")
		}
		return n, err
	})
	waitParked(t, 1)
	if n := reads.Load(); n != 0 {
		t.Errorf("the Read after a short read made %d read syscalls before it parked, want 0", n)
	}
	if _, err := peer.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	if r := await(t, ch, 10*time.Second, "second Read"); r.err != nil {
		t.Fatal(r.err)
	}
	if n := reads.Load(); n != 1 {
		t.Errorf("the Read after a short read made %d read syscalls, want 1", n)
	}
}

func TestFINAfterAShortReadIsEOF(t *testing.T) {
	c, peer, h := drainPair(t, "tcp")
	if _, err := peer.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	if err := peer.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	// The FIN's event is delivered before Read starts: Read's Prepare
	// drops its readiness, and no later event will report it again.
	hubtest.Eventually(t, 10*time.Second, "the hub to see the FIN", func() bool { return transport.Exceptional(c) })
	hubCaughtUp(t, h)
	if got, err := readWithin(t, c); got != "hello" || err != nil {
		t.Fatalf("first Read: %q, %v; want \"hello\"", got, err)
	}
	if got, err := readWithin(t, c); got != "" || err != io.EOF {
		t.Fatalf("Read after the data: %q, %v; want io.EOF", got, err)
	}
}

func TestDataAfterAnUrgentMarkIsRead(t *testing.T) {
	c, peer, h := drainPair(t, "tcp")
	// With SO_OOBINLINE off, a read stops short at the urgent mark: "ab",
	// then "cd" (the urgent byte is out of band). Nothing after "cd" will
	// bring another event.
	rc, err := peer.(*net.TCPConn).SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	if err := rc.Control(func(fd uintptr) {
		for _, m := range []struct {
			b     string
			flags int
		}{{"ab", 0}, {"X", unix.MSG_OOB}, {"cd", 0}} {
			if serr == nil {
				serr = unix.Send(int(fd), []byte(m.b), m.flags)
			}
		}
	}); err != nil || serr != nil {
		t.Fatal(err, serr)
	}
	hubtest.Eventually(t, 10*time.Second, "the hub to see the urgent data", func() bool { return transport.Exceptional(c) })
	hubCaughtUp(t, h)
	if got, err := readWithin(t, c); got != "ab" || err != nil {
		t.Fatalf("first Read: %q, %v; want \"ab\" (up to the urgent mark)", got, err)
	}
	if got, err := readWithin(t, c); got != "cd" || err != nil {
		t.Fatalf("Read after the urgent mark: %q, %v; want \"cd\"", got, err)
	}
}

func TestRawReadClearsTheShortReadRule(t *testing.T) {
	c, peer, h := drainPair(t, "tcp")
	if _, err := peer.Write([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if got, err := readWithin(t, c); got != "a" || err != nil {
		t.Fatalf("first Read: %q, %v; want \"a\"", got, err)
	}
	// "b" arrives and its readiness is delivered; then a raw read that
	// reads nothing Prepares, dropping that readiness. The next Read must
	// try read(2) rather than wait for an event that has come and gone.
	if _, err := peer.Write([]byte("b")); err != nil {
		t.Fatal(err)
	}
	waitQueued(t, c, 1)
	hubCaughtUp(t, h)
	rc, err := c.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	if err := rc.Read(func(uintptr) bool { return true }); err != nil {
		t.Fatal(err)
	}
	if got, err := readWithin(t, c); got != "b" || err != nil {
		t.Fatalf("Read after a raw read: %q, %v; want \"b\"", got, err)
	}
}

// TestUnixShortReadDoesNotWait: a unix stream read also stops short at a
// message that carries fds, with data after it and no event to come, so
// the rule is TCP's only.
func TestUnixShortReadDoesNotWait(t *testing.T) {
	c, peer, h := drainPair(t, "unix")
	uc := peer.(*net.UnixConn)
	rights := unix.UnixRights(int(os.Stdin.Fd()))
	for _, m := range []struct {
		b   string
		oob []byte
	}{{"a", nil}, {"b", rights}, {"c", nil}} {
		if _, _, err := uc.WriteMsgUnix([]byte(m.b), m.oob, nil); err != nil {
			t.Fatal(err)
		}
	}
	waitQueued(t, c, 3)
	hubCaughtUp(t, h)
	var got bytes.Buffer
	for got.Len() < 3 {
		s, err := readWithin(t, c)
		if err != nil {
			t.Fatalf("Read after %q: %v", got.String(), err)
		}
		got.WriteString(s)
	}
	if got.String() != "abc" {
		t.Fatalf("read %q, want \"abc\"", got.String())
	}
}

func TestPingPongMakesOneReadSyscallPerMessage(t *testing.T) {
	var reads atomic.Int64
	transport.CountReads(t, &reads)
	c, peer, _ := drainPair(t, "tcp")
	const rounds = 200
	go func() {
		buf := make([]byte, 64)
		for range rounds {
			n, err := c.Read(buf)
			if err != nil {
				return
			}
			if _, err := c.Write(buf[:n]); err != nil {
				return
			}
		}
	}()
	msg := []byte("ping")
	buf := make([]byte, len(msg))
	peer.SetDeadline(time.Now().Add(30 * time.Second))
	for i := range rounds {
		if _, err := peer.Write(msg); err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadFull(peer, buf); err != nil {
			t.Fatalf("round %d: %v", i, err)
		}
	}
	// One read(2) per message, give or take a wake that finds the data
	// already taken; package net's rule (read until EAGAIN) makes two.
	if n := reads.Load(); n > rounds*5/4 {
		t.Errorf("%d read syscalls for %d messages, want about one each", n, rounds)
	}
}
