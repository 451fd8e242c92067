//go:build linux

package poller_test

import (
	"errors"
	"net"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

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
						id := goid()
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
		if hubID.Load() == goid() {
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
				within(t, time.Second, h.Done(), "hub goroutine exit")
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

// TestCloseRunsCallbacksAlreadyScheduled: Close may land while the hub runs
// the callbacks; it still returns only once the hub has stopped, and every
// callback scheduled before Close has run by then.
func TestCloseRunsCallbacksAlreadyScheduled(t *testing.T) {
	h := hubtest.NewHub(t)
	var ran atomic.Int64
	for range 100 {
		h.Schedule(func() { ran.Add(1) })
	}
	h.Close()
	select {
	case <-h.Done():
	default:
		t.Fatal("Close returned before the hub goroutine stopped")
	}
	if ran.Load() != 100 {
		t.Fatalf("%d of 100 callbacks ran", ran.Load())
	}
}

// TestCloseDuringACallbackWaitsForIt: a Close from another goroutine while a
// callback runs is not the callback's own Close: it waits for the callback
// to return and the hub to stop.
func TestCloseDuringACallbackWaitsForIt(t *testing.T) {
	h := hubtest.NewHub(t)
	running, release := make(chan struct{}), make(chan struct{})
	h.Schedule(func() { close(running); <-release })
	within(t, 5*time.Second, running, "callback running")
	closed := make(chan error, 1)
	go func() { closed <- h.Close() }()
	select {
	case err := <-closed:
		t.Fatalf("Close returned (%v) while a callback still ran", err)
	case <-time.After(50 * time.Millisecond): // a return here would be the bug
	}
	close(release)
	if err := within(t, 5*time.Second, closed, "Close returning"); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.Done():
	default:
		t.Fatal("Close returned before the hub goroutine stopped")
	}
}

// TestCloseWaitsForTheHubGoroutine: Close from a goroutine while no callback
// runs returns after the hub goroutine has stopped and its fds are closed.
func TestCloseWaitsForTheHubGoroutine(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		callbacksDone(t, h)
		epfd, wakeFd := h.FdsForTest()
		_, waiter := parkedReader(t, h)
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		select {
		case <-h.Done():
		default:
			t.Fatal("Close returned before the hub goroutine stopped")
		}
		for _, fd := range []int{epfd, wakeFd} {
			if fdOpen(fd) {
				t.Errorf("fd %d still open after Close", fd)
			}
		}
		if err := within(t, 5*time.Second, waiter, "waiter"); !errors.Is(err, poller.ErrClosed) {
			t.Fatalf("waiter got %v", err)
		}
	})
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

func TestHubGoroutineCarriesItsPprofLabel(t *testing.T) {
	h := hubtest.NewHub(t)
	within(t, time.Second, scheduled(t, h), "a callback") // the loop is running
	var b strings.Builder
	if err := pprof.Lookup("goroutine").WriteTo(&b, 1); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), `labels: {"hubio":"hub"}`) {
		t.Fatalf("no goroutine labelled hubio=hub in the goroutine profile:\n%s", b.String())
	}
}

// BenchmarkScheduleRoundTrip measures Schedule from a goroutine until the
// callback has run on the hub and signalled back.
func BenchmarkScheduleRoundTrip(b *testing.B) {
	for _, d := range designs {
		b.Run(d.String(), func(b *testing.B) {
			h := hubtest.NewHub(b, poller.WithWaitDesign(d))
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
