//go:build linux

package poller_test

import (
	"errors"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

func TestMain(m *testing.M) {
	if os.Getenv("HUBIO_POLLER_EXHAUST_CHILD") == "1" {
		// The fd-exhaustion child must reach Default with no hub yet.
		os.Exit(m.Run())
	}
	// The default hub lives for the whole process by design: start it first
	// so that goleak ignores its goroutine and nothing else.
	poller.Default()
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}

var designs = []poller.WaitDesign{poller.Park, poller.Block}

// forEachDesign runs f once per hub wait design, each with its own hub.
func forEachDesign(t *testing.T, f func(t *testing.T, h *poller.Hub)) {
	for _, d := range designs {
		t.Run(d.String(), func(t *testing.T) { f(t, newHub(t, poller.WithWaitDesign(d))) })
	}
}

func newHub(t testing.TB, opts ...poller.Option) *poller.Hub {
	t.Helper()
	h, err := poller.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// pipe returns a non-blocking pipe, closed at cleanup unless closed before.
func pipe(t testing.TB) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// parkedReader registers the read end of a new pipe on h and starts a
// goroutine waiting for it to be readable; the channel gets what Wait
// returns (nothing is ever written to the pipe).
func parkedReader(t testing.TB, h *poller.Hub) (*poller.Registration, <-chan error) {
	t.Helper()
	r, _ := pipe(t)
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- reg.Wait(poller.Read) }()
	return reg, got
}

// within fails the test if ch does not deliver within d.
func within[T any](t testing.TB, d time.Duration, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
		panic("unreachable")
	}
}

func TestScheduleRunsOnHubGoroutineInPerCallerOrder(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		const callers, total = 32, 10000
		var hubID atomic.Uint64
		seen := make([][]int, callers) // written only by the hub goroutine
		var wrong atomic.Int64
		var wg sync.WaitGroup
		done := make(chan struct{})
		var ran atomic.Int64
		for c := range callers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := c; i < total; i += callers {
					err := h.Schedule(func() {
						id := poller.Goid()
						if !hubID.CompareAndSwap(0, id) && hubID.Load() != id {
							wrong.Add(1)
						}
						seen[c] = append(seen[c], i)
						if ran.Add(1) == total {
							close(done)
						}
					})
					if err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		wg.Wait()
		within(t, 10*time.Second, done, "all callbacks run")
		if wrong.Load() != 0 {
			t.Fatalf("%d callbacks ran off the hub goroutine", wrong.Load())
		}
		if hubID.Load() == poller.Goid() {
			t.Fatal("callbacks ran on the test goroutine")
		}
		for c, s := range seen {
			for j := 1; j < len(s); j++ {
				if s[j] <= s[j-1] {
					t.Fatalf("caller %d: callback %d ran after %d", c, s[j], s[j-1])
				}
			}
		}
		// The counter is updated after each batch of callbacks has run.
		for deadline := time.Now().Add(5 * time.Second); h.Stats().Callbacks < total; {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v: callbacks not counted", h.Stats())
			}
			runtime.Gosched()
		}
		if st := h.Stats(); st.Writes > st.Signals || st.Signals < total {
			t.Fatalf("stats %+v", st)
		}
	})
}

func TestAfterFuncNeverFiresEarlyAndStopCancels(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		type fired struct{ at, start time.Time }
		ch := make(chan fired, 8)
		for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 0} {
			start := time.Now()
			h.AfterFunc(d, func() { ch <- fired{time.Now(), start} })
			f := within(t, 5*time.Second, ch, "timer")
			if el := f.at.Sub(f.start); el < d {
				t.Fatalf("timer for %v fired after %v", d, el)
			}
		}
		cancelled := make(chan struct{}, 1)
		stop := h.AfterFunc(20*time.Millisecond, func() { cancelled <- struct{}{} })
		if !stop() {
			t.Fatal("stop of a pending timer returned false")
		}
		if stop() {
			t.Fatal("second stop returned true")
		}
		later := make(chan struct{})
		h.AfterFunc(60*time.Millisecond, func() { close(later) })
		within(t, 5*time.Second, later, "later timer")
		select {
		case <-cancelled:
			t.Fatal("stopped timer fired")
		default:
		}
		// A stop after the timer fired reports false.
		zero := make(chan struct{})
		stop = h.AfterFunc(0, func() { close(zero) })
		within(t, 5*time.Second, zero, "zero timer")
		if stop() {
			t.Fatal("stop after firing returned true")
		}
	})
}

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

func TestCloseWakesHundredWaiters(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		const n = 100
		errs := make(chan error, n)
		for range n {
			r, _ := pipe(t)
			reg, err := h.Register(r)
			if err != nil {
				t.Fatal(err)
			}
			go func() {
				for {
					if err := reg.Wait(poller.Read); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		start := time.Now()
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		for range n {
			err := within(t, time.Second-time.Since(start), errs, "waiter woken by Close")
			if !errors.Is(err, net.ErrClosed) || !errors.Is(err, poller.ErrClosed) {
				t.Fatalf("waiter got %v, want hub ErrClosed", err)
			}
		}
		if err := h.Close(); err == nil || !errors.Is(err, net.ErrClosed) {
			t.Fatalf("second Close = %v", err)
		}
		if err := h.Schedule(func() {}); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Schedule after Close = %v", err)
		}
		r, _ := pipe(t)
		if _, err := h.Register(r); !errors.Is(err, net.ErrClosed) {
			t.Fatalf("Register after Close = %v", err)
		}
		if s := h.Stats(); s.Registered != 0 {
			t.Fatalf("Registered after Close = %d", s.Registered)
		}
	})
}

func TestCloseFromACallbackStopsTheHubWhenItReturns(t *testing.T) {
	for _, via := range []string{"Schedule", "AfterFunc"} {
		t.Run(via, func(t *testing.T) {
			forEachDesign(t, func(t *testing.T, h *poller.Hub) {
				_, waiter := parkedReader(t, h)
				spare, _ := pipe(t) // for a Register after Close
				closed := make(chan error, 1)
				later := make(chan struct{})
				var dropped atomic.Bool // a timer due after Close ran
				closeOnHub := func() {
					closed <- h.Close()
					// Still on the hub goroutine, after Close returned:
					// the hub is closing but has not stopped under us.
					if err := h.Schedule(func() {}); !errors.Is(err, net.ErrClosed) {
						t.Errorf("Schedule after Close in a callback = %v", err)
					}
					if _, err := h.Register(spare); !errors.Is(err, net.ErrClosed) {
						t.Errorf("Register after Close in a callback = %v", err)
					}
				}
				if via == "Schedule" {
					// The gate holds the hub in the first callback until
					// the second is queued, so that it is queued before Close.
					gate := make(chan struct{})
					h.Schedule(func() { <-gate; closeOnHub() })
					h.Schedule(func() { close(later) })
					close(gate)
				} else {
					// The hub is held in a callback until both timers are
					// due, so that one batch holds both: the first closes
					// the hub, and Close drops the second.
					gate := make(chan struct{})
					h.Schedule(func() { <-gate })
					h.AfterFunc(time.Millisecond, closeOnHub)
					h.AfterFunc(2*time.Millisecond, func() { dropped.Store(true) })
					time.Sleep(5 * time.Millisecond) // the clock is what is waited for
					close(gate)
					close(later)
				}
				if err := within(t, time.Second, closed, "Close in a callback returning"); err != nil {
					t.Fatalf("Close in a callback = %v", err)
				}
				within(t, time.Second, later, "callback scheduled before Close")
				within(t, time.Second, h.DoneForTest(), "hub goroutine exit")
				if dropped.Load() {
					t.Error("a timer pending when a callback closed the hub ran")
				}
				if err := within(t, time.Second, waiter, "waiter woken"); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("waiter got %v, want ErrClosed", err)
				}
				if err := h.Close(); !errors.Is(err, net.ErrClosed) {
					t.Fatalf("second Close = %v", err)
				}
			})
		})
	}
}

func TestCloseRunsCallbacksAlreadyScheduled(t *testing.T) {
	h := newHub(t)
	var ran atomic.Int64
	for range 100 {
		h.Schedule(func() { ran.Add(1) })
	}
	h.Close()
	if ran.Load() != 100 {
		t.Fatalf("%d of 100 callbacks ran", ran.Load())
	}
}

func TestDeregisterWakesWaiterWithErrClosed(t *testing.T) {
	h := newHub(t)
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
	h := newHub(t)
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
	if err := h.DispatchForTest(r, oldGen, unix.EPOLLIN|unix.EPOLLOUT); err != nil {
		t.Fatal(err)
	}
	if reg.Pending(poller.Read) || reg.Pending(poller.Write) {
		t.Fatal("stale event for the old fd woke the new owner")
	}
	if err := h.DispatchForTest(r, reg.Gen(), unix.EPOLLIN); err != nil {
		t.Fatal(err)
	}
	if !reg.Pending(poller.Read) {
		t.Fatal("current event not delivered")
	}
	_ = w
}

func TestDefaultHubCannotBeClosed(t *testing.T) {
	h := poller.Default()
	if h != poller.Default() {
		t.Fatal("Default returned two hubs")
	}
	if err := h.Close(); !errors.Is(err, poller.ErrDefaultHub) {
		t.Fatalf("Close(Default()) = %v", err)
	}
	done := make(chan struct{})
	if err := h.Schedule(func() { close(done) }); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, done, "default hub callback")
}

// BenchmarkScheduleRoundTrip measures Schedule from a goroutine until the
// callback has run on the hub and signalled back.
func BenchmarkScheduleRoundTrip(b *testing.B) {
	for _, d := range designs {
		b.Run(d.String(), func(b *testing.B) {
			h := newHub(b, poller.WithWaitDesign(d))
			done := make(chan struct{}, 1)
			f := func() { done <- struct{}{} }
			b.ReportAllocs()
			for b.Loop() {
				h.Schedule(f)
				<-done
			}
		})
	}
}

// BenchmarkReadiness measures a byte written to a pipe until the goroutine
// waiting for it through the hub has read it: readiness-to-waiter latency,
// round trip (two pipes, two waiters).
func BenchmarkReadiness(b *testing.B) {
	for _, d := range designs {
		b.Run(d.String(), func(b *testing.B) {
			h := newHub(b, poller.WithWaitDesign(d))
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

// TestAfterFuncCenturiesAwayStaysPending: a duration that overflows the
// hub's clock saturates instead of firing at once.
func TestAfterFuncCenturiesAwayStaysPending(t *testing.T) {
	h := newHub(t)
	fired := make(chan struct{}, 1)
	stop := h.AfterFunc(time.Duration(1<<63-1), func() { fired <- struct{}{} })
	later := make(chan struct{})
	h.AfterFunc(20*time.Millisecond, func() { close(later) })
	within(t, 5*time.Second, later, "near timer")
	select {
	case <-fired:
		t.Fatal("a timer centuries away fired")
	default:
	}
	if !stop() {
		t.Fatal("the far timer is not pending")
	}
}

func TestHubGoroutineCarriesItsPprofLabel(t *testing.T) {
	h := newHub(t)
	within(t, time.Second, scheduled(t, h), "a callback") // the loop is running
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `labels: {"hubio":"hub"}`) {
		t.Fatalf("no goroutine labelled hubio=hub in the goroutine profile:\n%s", b.String())
	}
}

// scheduled returns a channel closed once a callback scheduled on h now has run.
func scheduled(t testing.TB, h *poller.Hub) <-chan struct{} {
	t.Helper()
	ran := make(chan struct{})
	if err := h.Schedule(func() { close(ran) }); err != nil {
		t.Fatal(err)
	}
	return ran
}
