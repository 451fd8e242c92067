package poller

import (
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// epoch anchors the hub's monotonic clock: now() is the time since epoch, in
// nanoseconds, read from the monotonic clock (time.Since).
var epoch = time.Now()

// now returns the hub's monotonic clock. It is never below 1, so 0 can mean
// "no deadline" wherever a time is stored.
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
// Ownership: every field is guarded by timers.mu. f runs on the hub
// goroutine, never under the lock.
type timer struct {
	when int64  // hub clock at which f runs
	f    func() // the callback
	idx  int    // index in timers.heap; -1 when not pending
}

// timers is a min-heap of pending timers keyed by when. Any goroutine may
// add or remove a timer (under mu); only the hub goroutine pops expired ones.
type timers struct {
	mu   sync.Mutex
	heap []*timer
	// n mirrors len(heap), written under mu: the hub reads it without the
	// lock to skip timer work when there is none. A timer added after a
	// read of zero signals the hub, which then looks again.
	n atomic.Int64
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
		ts.n.Store(int64(len(ts.heap)))
		ts.up(t.idx)
	}
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
	ts.n.Store(int64(last))
	t.idx = -1
	if i != last {
		ts.fix(i)
	}
	return true
}

// popExpired removes every timer due at or before n and appends its
// callback to fs. next is the earliest remaining when, or 0 if none. Must be
// called with mu held.
func (ts *timers) popExpired(n int64, fs []func()) (out []func(), next int64) {
	for len(ts.heap) > 0 && ts.heap[0].when <= n {
		t := ts.heap[0]
		ts.remove(t)
		fs = append(fs, t.f)
	}
	if len(ts.heap) > 0 {
		next = ts.heap[0].when
	}
	return fs, next
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
