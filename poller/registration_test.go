//go:build linux

package poller_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

func TestReadinessWakesWaiter(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		r, w := pipe(t)
		reg, err := h.Register(r)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Deregister()
		got := make(chan error, 1)
		go func() {
			var b [1]byte
			for {
				if err := reg.Prepare(poller.Read); err != nil {
					got <- err
					return
				}
				_, err := unix.Read(r, b[:])
				if err == unix.EAGAIN {
					if err := reg.Wait(poller.Read); err != nil {
						got <- err
						return
					}
					continue
				}
				got <- err
				return
			}
		}()
		unix.Write(w, []byte{1})
		if err := within(t, 5*time.Second, got, "read"); err != nil {
			t.Fatal(err)
		}
		if h.Stats().Registered != 1 {
			t.Fatalf("stats %+v", h.Stats())
		}
	})
}

func TestExceptionalIsSetByAHangUpNotByData(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		a, b := socketpair(t)
		reg, err := h.Register(a)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Deregister()
		// Data: its readiness is delivered, and it is not exceptional.
		if err := reg.Prepare(poller.Read); err != nil {
			t.Fatal(err)
		}
		if _, err := unix.Write(b, []byte{1}); err != nil {
			t.Fatal(err)
		}
		done := make(chan error, 1)
		go func() { done <- reg.Wait(poller.Read) }()
		if err := within(t, 5*time.Second, done, "Wait for data"); err != nil {
			t.Fatal(err)
		}
		if reg.Exceptional() {
			t.Fatal("Exceptional after data alone")
		}
		// The peer's shutdown (EPOLLRDHUP) is.
		if err := unix.Shutdown(b, unix.SHUT_WR); err != nil {
			t.Fatal(err)
		}
		hubtest.Eventually(t, 5*time.Second, "Exceptional after the peer's shutdown", reg.Exceptional)
	})
}

func TestDeadlineWakesWaiterAndCanMove(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		r, _ := pipe(t)
		reg, err := h.Register(r)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Deregister()
		reg.Prepare(poller.Read)
		got := make(chan error, 1)
		go func() {
			for {
				if err := reg.Wait(poller.Read); err != nil {
					got <- err
					return
				}
			}
		}()
		// Far deadline first, then moved near while the waiter is parked.
		reg.SetDeadline(poller.Read, time.Now().Add(time.Hour))
		start := time.Now()
		reg.SetDeadline(poller.Read, time.Now().Add(20*time.Millisecond))
		err = within(t, 5*time.Second, got, "deadline")
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Wait = %v, want ErrDeadlineExceeded", err)
		}
		if time.Since(start) < 20*time.Millisecond {
			t.Fatal("deadline fired early")
		}
		reg.SetDeadline(poller.Read, time.Time{})
		if err := reg.Prepare(poller.Read); err != nil {
			t.Fatalf("Prepare after clearing deadline = %v", err)
		}
		reg.SetDeadline(poller.Read, time.Now().Add(-time.Second))
		if err := reg.Prepare(poller.Read); !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("Prepare with past deadline = %v", err)
		}
	})
}

// TestDeadlineReadsWhatSetDeadlineSet: Deadline reports each direction's
// deadline as set (to within the hub clock's rounding), the zero time once
// cleared, a past time once passed, and stays readable after the hub
// closes (grpcopt reads it there: a conn moved off a closed hub).
func TestDeadlineReadsWhatSetDeadlineSet(t *testing.T) {
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := pipe(t)
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Deregister()
	near := func(got, want time.Time) bool {
		d := got.Sub(want)
		return d > -time.Second && d < time.Second
	}
	if d := reg.Deadline(poller.Read); !d.IsZero() {
		t.Fatalf("Deadline before any SetDeadline = %v, want the zero time", d)
	}
	at := time.Now().Add(time.Hour)
	reg.SetDeadline(poller.Read, at)
	if d := reg.Deadline(poller.Read); !near(d, at) {
		t.Fatalf("read Deadline = %v, want about %v", d, at)
	}
	if d := reg.Deadline(poller.Write); !d.IsZero() {
		t.Fatalf("write Deadline = %v after setting only the read one", d)
	}
	past := time.Now().Add(-time.Minute)
	reg.SetDeadline(poller.Write, past)
	if d := reg.Deadline(poller.Write); !d.Before(time.Now()) {
		t.Fatalf("write Deadline = %v after setting a past one, want a past time", d)
	}
	h.Close()
	if d := reg.Deadline(poller.Read); !near(d, at) {
		t.Fatalf("read Deadline after the hub closed = %v, want about %v", d, at)
	}
	reg.SetDeadline(poller.Read, time.Time{})
	if d := reg.Deadline(poller.Read); !d.IsZero() {
		t.Fatalf("Deadline after clearing = %v, want the zero time", d)
	}
}

func TestDeregisterWakesWaiterWithErrClosed(t *testing.T) {
	h := hubtest.NewHub(t)
	reg, got := parkedReader(t, h)
	reg.Deregister()
	reg.Deregister()
	if err := within(t, 5*time.Second, got, "deregistered waiter"); err != net.ErrClosed {
		t.Fatalf("Wait = %v, want net.ErrClosed", err)
	}
	if s := h.Stats(); s.Registered != 0 {
		t.Fatalf("Registered = %d", s.Registered)
	}
}

// TestStaleEventForReusedFdIsDropped closes a registered fd, opens a new one
// that gets the same number, and delivers an event carrying the old
// registration's generation: the new owner must not be woken by it.
func TestStaleEventForReusedFdIsDropped(t *testing.T) {
	h := hubtest.NewHub(t)
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	old, err := h.Register(p[0])
	if err != nil {
		t.Fatal(err)
	}
	oldGen := old.Gen()
	old.Deregister()
	unix.Close(p[0])
	unix.Close(p[1])

	r, w := pipe(t)
	if r != p[0] {
		t.Skipf("fd %d not reused (got %d)", p[0], r)
	}
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Deregister()
	reg.Prepare(poller.Read)
	reg.Prepare(poller.Write)
	if err := h.DispatchForTest(r, oldGen, true, true); err != nil {
		t.Fatal(err)
	}
	if reg.Pending(poller.Read) || reg.Pending(poller.Write) {
		t.Fatal("stale event for the old fd woke the new owner")
	}
	if err := h.DispatchForTest(r, reg.Gen(), true, false); err != nil {
		t.Fatal(err)
	}
	if !reg.Pending(poller.Read) {
		t.Fatal("current event not delivered")
	}
	_ = w
}

// BenchmarkReadiness measures a byte written to a pipe until the goroutine
// waiting for it through the hub has read it: readiness-to-waiter latency,
// round trip (two pipes, two waiters).
func BenchmarkReadiness(b *testing.B) {
	for _, d := range designs {
		b.Run(d.String(), func(b *testing.B) {
			h := hubtest.NewHub(b, poller.WithWaitDesign(d))
			r1, w1 := pipe(b)
			r2, w2 := pipe(b)
			reg1, _ := h.Register(r1)
			reg2, _ := h.Register(r2)
			defer reg1.Deregister()
			defer reg2.Deregister()
			readOne := func(reg *poller.Registration, fd int) bool {
				var buf [1]byte
				for {
					if reg.Prepare(poller.Read) != nil {
						return false
					}
					_, err := unix.Read(fd, buf[:])
					if err == unix.EAGAIN {
						if reg.Wait(poller.Read) != nil {
							return false
						}
						continue
					}
					return err == nil
				}
			}
			go func() {
				for readOne(reg1, r1) {
					unix.Write(w2, []byte{1})
				}
			}()
			b.ReportAllocs()
			for b.Loop() {
				unix.Write(w1, []byte{1})
				readOne(reg2, r2)
			}
			reg1.Deregister()
		})
	}
}

// TestRegistrationDoesNotKeepItsOwnerAlive: the hub holds registrations (in
// its table, their deadline timers in its heap) but nothing they point to,
// so an owner dropped without Close is collected, and a cleanup attached to
// it can deregister the fd.
func TestRegistrationDoesNotKeepItsOwnerAlive(t *testing.T) {
	h := hubtest.NewHub(t)
	r, _ := pipe(t)
	type owner struct {
		reg *poller.Registration
		buf [256]byte // not a tiny object: cleanups on those may never run
	}
	o := &owner{}
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	o.reg = reg
	reg.SetDeadline(poller.Read, time.Now().Add(time.Hour)) // a timer in the heap
	cleaned := make(chan struct{})
	runtime.AddCleanup(o, func(reg *poller.Registration) {
		reg.Deregister()
		close(cleaned)
	}, reg)
	o = nil
	for deadline := time.Now().Add(10 * time.Second); ; {
		runtime.GC()
		select {
		case <-cleaned:
			if n := h.Stats().Registered; n != 0 {
				t.Fatalf("Registered = %d after the cleanup", n)
			}
			return
		case <-time.After(10 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("an owner the test dropped was not collected: the hub keeps it reachable")
		}
	}
}

// TestFullBatchesAreHarvestedAgain: with one event per wait, readiness of
// several fds at once still reaches every waiter (a full batch makes the
// hub wait again at once).
func TestFullBatchesAreHarvestedAgain(t *testing.T) {
	for _, d := range designs {
		t.Run(d.String(), func(t *testing.T) {
			h := hubtest.NewHub(t, poller.WithWaitDesign(d), poller.WithEventBatch(1))
			const n = 8
			writers := make([]int, n)
			got := make(chan error, n)
			for i := range writers {
				r, w := pipe(t)
				writers[i] = w
				reg, err := h.Register(r)
				if err != nil {
					t.Fatal(err)
				}
				reg.Prepare(poller.Read)
				go func() { got <- reg.Wait(poller.Read) }()
			}
			for _, w := range writers {
				unix.Write(w, []byte{1})
			}
			for range n {
				if err := within(t, 5*time.Second, got, "waiter woken"); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// TestConnsCountsRegistrationsApartFromListeners: Stats.Conns counts the
// fds given to Register, not those given to RegisterListener, while
// Registered counts both; Deregister and Close take each off the count it
// is in.
func TestConnsCountsRegistrationsApartFromListeners(t *testing.T) {
	h := hubtest.NewHub(t)
	want := func(registered, conns int64) {
		t.Helper()
		if s := h.Stats(); s.Registered != registered || s.Conns != conns {
			t.Fatalf("Registered %d, Conns %d; want %d, %d", s.Registered, s.Conns, registered, conns)
		}
	}
	want(0, 0)
	lr, _ := pipe(t)
	l, err := h.RegisterListener(lr)
	if err != nil {
		t.Fatal(err)
	}
	want(1, 0)
	var conns []*poller.Registration
	for range 2 {
		r, _ := pipe(t)
		reg, err := h.Register(r)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, reg)
	}
	want(3, 2)
	l.Deregister()
	l.Deregister() // idempotent: counted once
	want(2, 2)
	conns[0].Deregister()
	want(1, 1)
	lr2, _ := pipe(t)
	if _, err := h.RegisterListener(lr2); err != nil {
		t.Fatal(err)
	}
	want(2, 1)
	if err := h.Close(); err != nil {
		t.Fatal(err)
	}
	want(0, 0)
}
