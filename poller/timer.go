package poller

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// The hub's timers: AfterFunc callbacks and Registration deadlines share one
// min-heap per hub, keyed by a monotonic clock of the package's own. Any
// goroutine adds and removes timers under timers.mu; only the hub goroutine
// pops the expired ones and runs them (runTimers), never under the lock.

// epoch anchors the hub's monotonic clock: now() is the time since epoch, in
// nanoseconds, read from the monotonic clock (time.Since).
var epoch = time.Now()

// now returns the hub's monotonic clock. It is never below 1, so 0 can mean
// "no deadline" wherever a time is stored.
//
// It reads one clock, not two: time.Since of a time with a monotonic
// reading (epoch has one) reads only the runtime's monotonic clock
// (runtime.nanotime), not the wall clock that time.Now also reads. Pulling
// runtime.nanotime in with go:linkname saves nothing measurable: 54.6 ns
// against 54.5 ns a call (median of 20 interleaved runs of 2M calls each,
// minima 34.6 and 34.0; go1.26.8, this project's shared 2-vCPU VM, load
// average 6-7; the vDSO read dominates), so now stays on the time package.
func now() int64 { return int64(time.Since(epoch)) + 1 }

// when converts an absolute time to the hub's monotonic clock, keeping the
// monotonic reading of t where it has one.
func when(t time.Time) int64 {
	return after(time.Until(t))
}

// after returns the hub-clock time d from now, saturating instead of
// overflowing for durations centuries away (time.Until caps at about 292
// years, and now() plus that wraps negative).
func after(d time.Duration) int64 {
	n := now()
	if d > 0 && n+int64(d) < n {
		return math.MaxInt64
	}
	return n + int64(d)
}

// timer is one entry of a hub's timer heap.
//
// Ownership: when and idx are guarded by timers.mu; f and user are written
// before the timer is first added and never again, so the hub goroutine
// reads them after popping the timer without the lock. f runs on the hub
// goroutine, never under the lock.
type timer struct {
	when int64  // hub clock at which f runs
	idx  int    // index in timers.heap; -1 when not pending
	f    func() // the callback; immutable once the timer is first added
	// user marks an AfterFunc callback (user code, which may call Close),
	// as opposed to a deadline's internal wake; immutable like f.
	user bool
}

// timers is a min-heap of pending timers keyed by when. Any goroutine may
// add or remove a timer (under mu); only the hub goroutine pops expired ones.
type timers struct {
	mu   sync.Mutex
	heap []*timer
	// n mirrors len(heap), and first the earliest when (0 for none),
	// both written under mu: the hub reads them without the lock to skip
	// timer work when nothing is due, which is most wake-ups of a hub
	// with long timers pending (telemetry's, idle conns' deadlines). A
	// timer added after such a read as the earliest signals the hub,
	// which then looks again; one removed after it only makes the hub
	// look, or wake, once for nothing.
	n     atomic.Int64
	first atomic.Int64
}

// publish updates n and first after a change of the heap. Must be called
// with mu held.
func (ts *timers) publish() {
	ts.n.Store(int64(len(ts.heap)))
	var first int64
	if len(ts.heap) > 0 {
		first = ts.heap[0].when
	}
	ts.first.Store(first)
}

// add schedules t at w, or moves it there if it is already pending, and
// reports whether t became the earliest timer (so the hub must re-arm its
// wait). Must be called with mu held.
func (ts *timers) add(t *timer, w int64) (earliest bool) {
	t.when = w
	if t.idx >= 0 {
		ts.fix(t.idx)
	} else {
		t.idx = len(ts.heap)
		ts.heap = append(ts.heap, t)
		ts.up(t.idx)
	}
	ts.publish()
	return t.idx == 0
}

// remove unschedules t and reports whether it was pending. Must be called
// with mu held.
func (ts *timers) remove(t *timer) bool {
	i := t.idx
	if i < 0 {
		return false
	}
	last := len(ts.heap) - 1
	if i != last {
		ts.swap(i, last)
	}
	ts.heap[last] = nil
	ts.heap = ts.heap[:last]
	t.idx = -1
	if i != last {
		ts.fix(i)
	}
	ts.publish()
	return true
}

// popExpired removes every timer due at or before n and appends it to due.
// next is the earliest remaining when, or 0 if none. Must be called with mu
// held.
func (ts *timers) popExpired(n int64, due []*timer) (out []*timer, next int64) {
	for len(ts.heap) > 0 && ts.heap[0].when <= n {
		t := ts.heap[0]
		ts.remove(t)
		due = append(due, t)
	}
	if len(ts.heap) > 0 {
		next = ts.heap[0].when
	}
	return due, next
}

// late returns how far n is past the earliest timer's expiry, or -1 if no
// timer is due at n. mu must be held.
func (ts *timers) late(n int64) int64 {
	if len(ts.heap) == 0 || ts.heap[0].when > n {
		return -1
	}
	return n - ts.heap[0].when
}

func (ts *timers) fix(i int) {
	if !ts.down(i) {
		ts.up(i)
	}
}

func (ts *timers) swap(i, j int) {
	h := ts.heap
	h[i], h[j] = h[j], h[i]
	h[i].idx = i
	h[j].idx = j
}

func (ts *timers) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if ts.heap[p].when <= ts.heap[i].when {
			return
		}
		ts.swap(i, p)
		i = p
	}
}

func (ts *timers) down(i int) bool {
	start, n := i, len(ts.heap)
	for {
		l := 2*i + 1
		if l >= n {
			break
		}
		m := l
		if r := l + 1; r < n && ts.heap[r].when < ts.heap[l].when {
			m = r
		}
		if ts.heap[i].when <= ts.heap[m].when {
			break
		}
		ts.swap(i, m)
		i = m
	}
	return i > start
}

// AfterFunc runs f on the hub goroutine once d has passed (never earlier).
// stop cancels it and reports whether it was still pending. On a closed hub
// f never runs.
func (h *Hub) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	t := &timer{f: f, user: true, idx: -1}
	h.setTimer(t, after(d))
	return func() bool { return h.stopTimer(t) }
}

// setTimer (re)schedules t at w, waking the hub if t became the earliest.
func (h *Hub) setTimer(t *timer, w int64) {
	h.tm.mu.Lock()
	if h.closing.Load() {
		// It would never run. Checked under tm.mu: shutdown empties the
		// heap under it after closing is set, so no timer outlives it.
		h.tm.mu.Unlock()
		return
	}
	earliest := h.tm.add(t, w)
	h.tm.mu.Unlock()
	if earliest {
		h.wake.Signal()
	}
}

// stopTimer unschedules t and reports whether it was pending.
func (h *Hub) stopTimer(t *timer) bool {
	h.tm.mu.Lock()
	ok := h.tm.remove(t)
	h.tm.mu.Unlock()
	return ok
}

// runTimers runs the timers that are due at hub clock n, or now if n is 0,
// and returns the hub-clock time of the next one (0 if none). Hub goroutine
// only. due is scratch space. n lets pass share the reading its loop-time
// accounting took an instant before (observing.unpark): one clock read per
// wake-up instead of two. AfterFunc callbacks, which may call Close, run
// between enterCallbacks and leaveCallbacks; deadline wakes run without
// that cost.
func (h *Hub) runTimers(due []*timer, n int64) ([]*timer, int64) {
	first := h.tm.first.Load()
	if first == 0 {
		return due[:0], 0
	}
	if n == 0 {
		n = now()
	}
	if first > n {
		return due[:0], first // nothing due: no lock (see timers.first)
	}
	h.tm.mu.Lock()
	late := h.tm.late(n)
	due, next := h.tm.popExpired(n, due[:0])
	h.tm.mu.Unlock()
	h.obs.loopDelay(late)
	ran := 0
	for i, t := range due {
		if h.closing.Load() {
			// A timer before this one (or another goroutine) closed the
			// hub: the rest are pending timers, and Close drops those.
			clear(due[i:])
			break
		}
		due[i] = nil
		if t.user {
			h.enterCallbacks()
			t.f()
			h.leaveCallbacks()
		} else {
			t.f()
		}
		ran++
	}
	if ran > 0 {
		h.timersRun.Add(uint64(ran))
	}
	return due[:0], next
}

// nextTimer returns the hub-clock time of the earliest timer, 0 if none.
// It reads timers.first, without the lock: a timer added later as the
// earliest signals the hub.
func (h *Hub) nextTimer() int64 { return h.tm.first.Load() }
