//go:build linux

package poller_test

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

// The hand-off protocol (poller's direction and park.go): the hub leaves
// each readiness in the direction's hand-off word and readies the waiter
// only if it has parked. These tests
// check that no readiness is lost that way, in the window between Prepare
// and Wait and under racing events in both directions.

// socketpair returns a connected non-blocking AF_UNIX stream pair, closed
// at cleanup.
func socketpair(t testing.TB) (a, b int) {
	t.Helper()
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	return fds[0], fds[1]
}

func TestReadinessBetweenPrepareAndWaitIsKept(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		r, w := pipe(t)
		reg, err := h.Register(r)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Deregister()
		if err := reg.Prepare(poller.Read); err != nil {
			t.Fatal(err)
		}
		// As if the read had just returned EAGAIN: the byte arrives, and
		// the hub delivers its event, before the owner calls Wait.
		unix.Write(w, []byte{1})
		deadline := time.Now().Add(10 * time.Second)
		for !reg.Pending(poller.Read) {
			if time.Now().After(deadline) {
				t.Fatal("the hub did not deliver the event in 10 s")
			}
			<-scheduled(t, h) // one more turn of the hub loop
		}
		got := make(chan error, 1)
		go func() { got <- reg.Wait(poller.Read) }()
		if err := within(t, 5*time.Second, got, "Wait after an event since Prepare"); err != nil {
			t.Fatal(err)
		}
		// Prepare forgets it: the next Wait parks until the next event.
		var b [1]byte
		unix.Read(r, b[:])
		if err := reg.Prepare(poller.Read); err != nil {
			t.Fatal(err)
		}
		if reg.Pending(poller.Read) {
			t.Fatal("Prepare kept a readiness from before it")
		}
		go func() { got <- reg.Wait(poller.Read) }()
		unix.Write(w, []byte{2})
		if err := within(t, 5*time.Second, got, "Wait for the next event"); err != nil {
			t.Fatal(err)
		}
	})
}

// TestPingPongOverASocketPairLosesNoWakeup bounces one byte between the
// two ends of a socket pair, each end on the hub with its own goroutine
// that reads, waits on EAGAIN, and writes back: every read event there
// also reports the end writable, so the write directions see a stream of
// readiness with no waiter, racing the writes. A lost wake-up stalls the
// ping-pong, which the bound catches.
func TestPingPongOverASocketPairLosesNoWakeup(t *testing.T) {
	const rounds = 3000
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		a, b := socketpair(t)
		regs := make([]*poller.Registration, 2)
		for i, fd := range []int{a, b} {
			reg, err := h.Register(fd)
			if err != nil {
				t.Fatal(err)
			}
			defer reg.Deregister()
			regs[i] = reg
		}
		done := make(chan error, 2)
		for i, fd := range []int{a, b} {
			go func() { done <- bounce(regs[i], fd, rounds, i == 0) }()
		}
		for range 2 {
			if err := within(t, 60*time.Second, done, fmt.Sprintf("%d round trips", rounds)); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// bounce reads a byte and writes it back, n times, waiting on reg whenever
// a syscall returns EAGAIN; first sends the first byte.
func bounce(reg *poller.Registration, fd, n int, first bool) error {
	io := func(m poller.Mode, op func() (int, error)) error {
		if err := reg.Prepare(m); err != nil {
			return err
		}
		for {
			_, err := op()
			if err != unix.EAGAIN {
				return err
			}
			if err := reg.Wait(m); err != nil {
				return err
			}
		}
	}
	var buf [1]byte
	write := func() (int, error) { return unix.Write(fd, buf[:]) }
	read := func() (int, error) { return unix.Read(fd, buf[:]) }
	if first {
		if err := io(poller.Write, write); err != nil {
			return err
		}
	}
	for i := range n {
		if err := io(poller.Read, read); err != nil {
			return fmt.Errorf("read %d: %w", i, err)
		}
		if first && i == n-1 {
			return nil // the last byte stays with the first end
		}
		if err := io(poller.Write, write); err != nil {
			return fmt.Errorf("write %d: %w", i, err)
		}
	}
	return nil
}

func TestWriterWaitingForBufferSpaceIsWoken(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		a, b := socketpair(t)
		reg, err := h.Register(a)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Deregister()
		if err := reg.Prepare(poller.Write); err != nil {
			t.Fatal(err)
		}
		chunk := make([]byte, 64<<10)
		for {
			if _, err := unix.Write(a, chunk); err == unix.EAGAIN {
				break
			} else if err != nil {
				t.Fatal(err)
			}
		}
		got := make(chan error, 1)
		go func() { got <- reg.Wait(poller.Write) }()
		// Drain the peer until the writer's Wait returns: the space it
		// frees makes a is writable again, which the hub must hand over.
		drained := make(chan struct{})
		go func() {
			defer close(drained)
			buf := make([]byte, 64<<10)
			for {
				if _, err := unix.Read(b, buf); err == unix.EAGAIN || err != nil {
					return
				}
			}
		}()
		<-drained
		if err := within(t, 5*time.Second, got, "Wait(Write) after the peer drained"); err != nil {
			t.Fatal(err)
		}
	})
}
