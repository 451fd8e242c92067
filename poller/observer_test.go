//go:build linux

package poller_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

// recorder is a poller.Observer that keeps what it is told.
type recorder struct {
	mu                      sync.Mutex
	delays, waits, handOffs []time.Duration
	iterations, eventsTotal int
}

func (r *recorder) LoopDelay(d time.Duration) {
	r.mu.Lock()
	r.delays = append(r.delays, d)
	r.mu.Unlock()
}
func (r *recorder) QueueWait(d time.Duration) {
	r.mu.Lock()
	r.waits = append(r.waits, d)
	r.mu.Unlock()
}
func (r *recorder) HandOff(d time.Duration) {
	r.mu.Lock()
	r.handOffs = append(r.handOffs, d)
	r.mu.Unlock()
}
func (r *recorder) Iteration(n int) {
	r.mu.Lock()
	r.iterations++
	r.eventsTotal += n
	r.mu.Unlock()
}

func (r *recorder) counts() (delays, waits, handOffs, iterations int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.delays), len(r.waits), len(r.handOffs), r.iterations
}

func TestObserverSeesTimersCallbacksAndHandOffs(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		rec := &recorder{}
		h.SetObserver(rec, 1)
		fired := make(chan struct{})
		h.AfterFunc(time.Millisecond, func() { close(fired) })
		within(t, 5*time.Second, fired, "AfterFunc")
		ran := make(chan struct{})
		h.Schedule(func() { close(ran) })
		within(t, 5*time.Second, ran, "Schedule")

		// A reader parked on a pipe, woken by a write: one hand-off.
		r, w := pipe(t)
		reg, err := h.Register(r)
		if err != nil {
			t.Fatal(err)
		}
		defer reg.Deregister()
		// Rounds of: park a reader, write once it has had time to park,
		// see it wake. A write that beats the park leaves a token and no
		// hand-off, so rounds repeat until one is measured.
		buf := make([]byte, 16)
		rounds := 0
		for ; rounds < 100; rounds++ {
			reg.Prepare(poller.Read)
			got := make(chan error, 1)
			go func() { got <- reg.Wait(poller.Read) }()
			select {
			case <-got: // a spurious wake: try again
				continue
			case <-time.After(20 * time.Millisecond):
			}
			unix.Write(w, []byte{1})
			if err := within(t, 5*time.Second, got, "woken reader"); err != nil {
				t.Fatal(err)
			}
			unix.Read(r, buf)
			if _, _, n, _ := rec.counts(); n > 0 {
				break
			}
		}
		delays, waits, handOffs, iterations := rec.counts()
		if delays == 0 || waits == 0 || iterations == 0 {
			t.Errorf("observer saw %d loop delays, %d queue waits, %d iterations; want each > 0", delays, waits, iterations)
		}
		if handOffs != 1 {
			t.Errorf("observer saw %d hand-offs over %d rounds, want 1 (the rounds stop at the first)", handOffs, rounds+1)
		}
	})
}

func TestLoopTimeOfIdleHubIsMostlyIdle(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		if busy, idle := h.LoopTime(); busy != 0 || idle != 0 {
			t.Fatalf("LoopTime before SetObserver = %v, %v; want zeros", busy, idle)
		}
		h.SetObserver(&recorder{}, 0)
		deadline := time.Now().Add(10 * time.Second)
		for {
			busy, idle := h.LoopTime()
			if idle >= 100*time.Millisecond {
				if busy > idle/2 {
					t.Errorf("idle hub: busy %v, idle %v", busy, idle)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("idle hub accounted %v parked in 10 s (busy %v)", idle, busy)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition
		}
	})
}

// TestAddObserverKeepsTheFirst: an observer added beside one set with
// SetObserver leaves both receiving every event; SetObserver then replaces
// both.
func TestAddObserverKeepsTheFirst(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		first, second := &recorder{}, &recorder{}
		h.SetObserver(first, 0)
		h.AddObserver(second, 0)
		for range 3 {
			ran := make(chan struct{})
			h.Schedule(func() { close(ran) })
			within(t, 5*time.Second, ran, "Schedule")
		}
		fired := make(chan struct{})
		h.AfterFunc(time.Millisecond, func() { close(fired) })
		within(t, 5*time.Second, fired, "AfterFunc")
		for name, r := range map[string]*recorder{"first": first, "second": second} {
			if delays, waits, _, iterations := r.counts(); delays == 0 || waits == 0 || iterations == 0 {
				t.Errorf("%s observer: %d delays, %d queue waits, %d iterations; want each > 0", name, delays, waits, iterations)
			}
		}
		h.SetObserver(first, 0)
		// A callback scheduled now runs after any iteration that loaded
		// the old observers has reported.
		settled := make(chan struct{})
		h.Schedule(func() { close(settled) })
		within(t, 5*time.Second, settled, "Schedule")
		_, _, _, before := second.counts()
		ran := make(chan struct{})
		h.Schedule(func() { close(ran) })
		within(t, 5*time.Second, ran, "Schedule")
		if _, _, _, after := second.counts(); after != before {
			t.Errorf("observer replaced by SetObserver saw %d more iterations", after-before)
		}
	})
}

// TestLoopTimeUnderEventsOnly: passes that only harvest events and wake a
// waiter (no callbacks) have their busy time sampled, one in 16, and
// estimated in the others. Busy and idle must still both only grow, add up
// to the time since SetObserver, and busy must grow with the passes.
func TestLoopTimeUnderEventsOnly(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		const rounds = 2000
		h.SetObserver(&recorder{}, 0)
		start := time.Now()
		busy0, idle0 := h.LoopTime()
		lastBusy, lastIdle := busy0, idle0
		pingPong(t, h, rounds, func(i int) {
			if i%50 == 0 {
				busy, idle := h.LoopTime()
				if busy < lastBusy || idle < lastIdle {
					t.Fatalf("round %d: LoopTime went from (%v, %v) to (%v, %v)", i, lastBusy, lastIdle, busy, idle)
				}
				lastBusy, lastIdle = busy, idle
			}
		})
		busy, idle := h.LoopTime()
		elapsed := time.Since(start)
		if busy < lastBusy || idle < lastIdle {
			t.Fatalf("LoopTime went from (%v, %v) to (%v, %v)", lastBusy, lastIdle, busy, idle)
		}
		if d := (busy - busy0) + (idle - idle0); d <= 0 || d > elapsed+time.Millisecond {
			t.Errorf("busy+idle grew by %v over %v", d, elapsed)
		}
		if busy == busy0 {
			t.Errorf("busy stayed at %v over %d rounds (%d polls)", busy, rounds, h.Stats().Iterations)
		}
	})
}

// pingPong runs rounds of a byte sent through two pipes between this
// goroutine and an echo goroutine, each side waiting through h for the
// other's byte: hub passes that only deliver readiness. each, if not nil,
// runs on this goroutine after every round.
func pingPong(t *testing.T, h *poller.Hub, rounds int, each func(round int)) {
	t.Helper()
	r1, w1 := pipe(t)
	r2, w2 := pipe(t)
	reg1, err := h.Register(r1)
	if err != nil {
		t.Fatal(err)
	}
	defer reg1.Deregister()
	reg2, err := h.Register(r2)
	if err != nil {
		t.Fatal(err)
	}
	defer reg2.Deregister()
	readOne := func(reg *poller.Registration, fd int) error {
		var buf [1]byte
		for {
			if err := reg.Prepare(poller.Read); err != nil {
				return err
			}
			if _, err := unix.Read(fd, buf[:]); err != unix.EAGAIN {
				return err
			}
			if err := reg.Wait(poller.Read); err != nil {
				return err
			}
		}
	}
	echoed := make(chan error, 1)
	go func() {
		for range rounds {
			if err := readOne(reg1, r1); err != nil {
				echoed <- err
				return
			}
			if _, err := unix.Write(w2, []byte{1}); err != nil {
				echoed <- err
				return
			}
		}
		echoed <- nil
	}()
	for i := range rounds {
		if _, err := unix.Write(w1, []byte{1}); err != nil {
			t.Fatal(err)
		}
		if err := readOne(reg2, r2); err != nil {
			t.Fatal(err)
		}
		if each != nil {
			each(i)
		}
	}
	if err := <-echoed; err != nil {
		t.Fatal(err)
	}
}

// TestLoopTimeConcurrentReaders: LoopTime read from several goroutines at
// once, in tight loops, while the hub wakes for events (each wake-up
// credits an estimate ahead of the time it stands for) and runs a callback
// that spins. Every reader must see busy and idle only grow, their sum
// never beyond the time since SetObserver, and the spin counted as busy
// in full.
func TestLoopTimeConcurrentReaders(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		before := time.Now()
		h.SetObserver(&recorder{}, 0)
		stop := make(chan struct{})
		errs := make(chan error, 3)
		var wg sync.WaitGroup
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				var lastBusy, lastIdle time.Duration
				for reads := 0; ; reads++ {
					busy, idle := h.LoopTime()
					if busy < lastBusy || idle < lastIdle {
						errs <- fmt.Errorf("read %d: LoopTime went from (%v, %v) to (%v, %v)", reads, lastBusy, lastIdle, busy, idle)
						return
					}
					if sum, most := busy+idle, time.Since(before); sum > most {
						errs <- fmt.Errorf("read %d: busy+idle %v, over the %v since SetObserver", reads, sum, most)
						return
					}
					lastBusy, lastIdle = busy, idle
					select {
					case <-stop:
						errs <- nil
						return
					default:
					}
				}
			}()
		}
		pingPong(t, h, 500, nil)
		busy0, _ := h.LoopTime()
		const spin = 30 * time.Millisecond
		done := make(chan struct{})
		h.Schedule(func() {
			for t0 := time.Now(); time.Since(t0) < spin; {
			}
			close(done)
		})
		within(t, 5*time.Second, done, "Schedule")
		// The spin's pass may not have parked yet: busy counts it running.
		if busy, _ := h.LoopTime(); busy-busy0 < spin {
			t.Errorf("busy grew by %v over a callback that spun %v", busy-busy0, spin)
		}
		pingPong(t, h, 500, nil)
		close(stop)
		wg.Wait()
		for range 3 {
			if err := <-errs; err != nil {
				t.Error(err)
			}
		}
	})
}

// TestLoopTimeAfterObserverRemoved: loop-time accounting, once started,
// goes on without an observer: an idle hub's idle time keeps growing.
func TestLoopTimeAfterObserverRemoved(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		h.SetObserver(&recorder{}, 0)
		h.SetObserver(nil, 0)
		_, idle0 := h.LoopTime()
		deadline := time.Now().Add(10 * time.Second)
		for {
			busy, idle := h.LoopTime()
			if idle-idle0 >= 100*time.Millisecond {
				if busy > idle/2 {
					t.Errorf("idle hub without an observer: busy %v, idle %v", busy, idle)
				}
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("idle hub without an observer accounted %v more parked in 10 s (busy %v)", idle-idle0, busy)
			}
			time.Sleep(10 * time.Millisecond) // polling a condition
		}
	})
}

// sampler is a recorder that asks for one poll in every.
type sampler struct {
	recorder
	every int
}

func (s *sampler) IterationEvery() int { return s.every }

// TestIterationSamplerGetsOnePollInEvery: an observer that implements
// IterationSampler is told of one poll in its period, counted by the hub,
// while an observer beside it still hears of every poll, which the hub's
// own count of polls (Stats.Iterations) matches.
func TestIterationSamplerGetsOnePollInEvery(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		all, some := &recorder{}, &sampler{every: 4}
		h.SetObserver(all, 0)
		h.AddObserver(some, 0)
		// Each snapshot runs on the hub goroutine, in a callback, so the
		// poll that ran it has been reported to both observers and counted.
		type snap struct{ polls, all, some int }
		snapshot := func() snap {
			got := make(chan snap, 1)
			h.Schedule(func() {
				_, _, _, a := all.counts()
				_, _, _, s := some.counts()
				got <- snap{int(h.Stats().Iterations), a, s}
			})
			select {
			case s := <-got:
				return s
			case <-time.After(5 * time.Second):
				t.Fatal("Schedule did not run in 5s")
				return snap{}
			}
		}
		first := snapshot()
		for range 400 {
			snapshot() // at least one poll each
		}
		last := snapshot()
		polls, a, s := last.polls-first.polls, last.all-first.all, last.some-first.some
		if polls < 400 {
			t.Fatalf("%d polls, want at least 400", polls)
		}
		if a != polls {
			t.Errorf("the plain observer heard of %d polls, want all %d", a, polls)
		}
		if s < polls/4-1 || s > polls/4+1 {
			t.Errorf("the sampler heard of %d polls, want one in 4 of %d (%d ± 1)", s, polls, polls/4)
		}
	})
}
