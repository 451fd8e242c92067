//go:build unix

package wakeup_test

import (
	"errors"
	"net"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/wakeup"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func newWakeup(t testing.TB) *wakeup.Wakeup {
	t.Helper()
	w, err := wakeup.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { w.Close() })
	return w
}

// readable polls the fd with a timeout and reports whether it is readable.
func readable(t testing.TB, fd int, timeout time.Duration) bool {
	t.Helper()
	pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
	for {
		n, err := unix.Poll(pfd, int(timeout/time.Millisecond))
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		return n == 1
	}
}

func TestSignalMakesFdReadableAndDrainClearsIt(t *testing.T) {
	w := newWakeup(t)
	if readable(t, w.Fd(), 0) {
		t.Fatal("new wakeup is readable")
	}
	w.Signal()
	if !readable(t, w.Fd(), time.Second) {
		t.Fatal("not readable after Signal")
	}
	w.Drain()
	if readable(t, w.Fd(), 0) {
		t.Fatal("readable after Drain")
	}
	w.Signal()
	if !readable(t, w.Fd(), time.Second) {
		t.Fatal("Signal after Drain did not make the fd readable again")
	}
}

func TestSignalsBetweenDrainsCoalesceIntoOneWrite(t *testing.T) {
	w := newWakeup(t)
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 1000 {
				w.Signal()
			}
		}()
	}
	wg.Wait()
	s := w.Stats()
	if s.Signals != 8000 || s.Writes != 1 {
		t.Fatalf("stats = %+v, want 8000 signals and 1 write", s)
	}
	w.Drain()
	w.Signal()
	if s := w.Stats(); s.Writes != 2 {
		t.Fatalf("writes after Drain+Signal = %d, want 2", s.Writes)
	}
}

// TestNoLostWakeup races Signal against Drain: every Signal issued after a
// Drain returned must leave the fd readable.
func TestNoLostWakeup(t *testing.T) {
	w := newWakeup(t)
	const rounds = 20000
	signalled := make(chan struct{})
	drained := make(chan struct{})
	go func() {
		for range rounds {
			<-drained
			w.Signal()
			signalled <- struct{}{}
		}
	}()
	for range rounds {
		w.Drain()
		drained <- struct{}{}
		<-signalled
		if !readable(t, w.Fd(), 5*time.Second) {
			t.Fatal("signal after drain was lost")
		}
	}
}

func TestCloseTwiceAndSignalAfterClose(t *testing.T) {
	w, err := wakeup.New()
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); !errors.Is(err, wakeup.ErrClosed) || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close = %v, want ErrClosed matching net.ErrClosed", err)
	}
	w.Signal() // must not write to a closed (maybe reused) fd
	if s := w.Stats(); s.Writes != 0 {
		t.Fatalf("Signal after Close wrote: %+v", s)
	}
}

func BenchmarkSignal(b *testing.B) {
	b.Run("coalesced", func(b *testing.B) {
		w := newWakeup(b)
		w.Signal()
		b.ReportAllocs()
		for b.Loop() {
			w.Signal()
		}
	})
	b.Run("uncoalesced", func(b *testing.B) {
		w := newWakeup(b)
		b.ReportAllocs()
		for b.Loop() {
			w.Signal()
			w.Drain()
		}
	})
}
