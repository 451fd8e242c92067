package poller

import (
	"math"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Observer receives the distributions a hub measures once SetObserver has
// given it one. The poller imports no metrics library: package telemetry
// implements Observer with OpenTelemetry instruments, and a hub with no
// observer measures nothing beyond the counters of Stats.
//
// Every method must return quickly, must not block and should not
// allocate: all but HandOff run on the hub goroutine, between events.
type Observer interface {
	// LoopDelay reports how late timers ran: for each pass of the loop
	// that ran timers, the time from the earliest due timer's expiry to
	// the moment the hub looked at the heap (Node's event-loop delay).
	// Hub goroutine.
	LoopDelay(d time.Duration)
	// Iteration reports the events one epoll_wait returned, the hub's
	// own wakeup included. Hub goroutine.
	Iteration(events int)
	// QueueWait reports how long the first callback of a batch (the one
	// that waited longest) sat in Schedule's queue before the hub ran the
	// batch. Hub goroutine.
	QueueWait(d time.Duration)
	// HandOff reports one sampled hand-off: the time from the hub goroutine
	// leaving a readiness token for a parked waiter to that waiter running
	// again, which is the runtime's wake-up cost. It runs on the waiter's
	// goroutine.
	HandOff(d time.Duration)
}

// IterationSampler is an Observer that wants Iteration for one poll in
// every IterationEvery() only (values below 2: every poll). The hub counts
// the polls and calls the others not at all, so an observer that keeps a
// sample of the events per poll pays nothing per poll: at one caller per
// conn a hub polls about four times per RPC, and a call into the observer
// at each poll was a tenth of telemetry's cost there (docs/telemetry.md,
// sixth pass). The hub reads IterationEvery once, when the observer is
// set or added; each observer of a hub keeps its own period. Package
// telemetry's observer asks for one poll in 16.
type IterationSampler interface {
	Observer
	IterationEvery() int
}

// SetObserver makes the hub report to o (nil stops reporting) and starts
// the loop-time accounting read by LoopTime. One hand-off in every
// handOffEvery is measured (1 measures all; ≤ 0 measures none). A later call
// replaces the observer, and every observer AddObserver added. SetObserver
// wakes the hub once, so that an idle hub starts accounting its park at
// once.
func (h *Hub) SetObserver(o Observer, handOffEvery int) {
	if o == nil {
		h.obs.box.Store(nil)
		return
	}
	b := &observerBox{o: o, iters: []iterTarget{iterTargetOf(o)}}
	if handOffEvery > 0 {
		b.every = uint32(handOffEvery)
	}
	h.obs.since.CompareAndSwap(0, now())
	h.obs.box.Store(b)
	h.Schedule(func() {}) // a closed hub has no loop time to account
}

// AddObserver makes the hub report to o as well as to the observers it has
// already (SetObserver's or AddObserver's): each method of each observer is
// called in the order they were added. One hand-off in every handOffEvery
// is measured, as in SetObserver; with several observers the hub samples
// at the smallest positive period any of them asked for, and each observer
// sees every sampled hand-off. SetObserver (nil included) replaces them
// all. Package telemetry adds its observer this way, so that a program's
// own observer keeps working.
func (h *Hub) AddObserver(o Observer, handOffEvery int) {
	if o == nil {
		return
	}
	every := uint32(max(handOffEvery, 0))
	it := iterTargetOf(o)
	for {
		old := h.obs.box.Load()
		b := &observerBox{o: o, every: every, iters: []iterTarget{it}}
		if old != nil {
			prev, ok := old.o.(observers)
			if !ok {
				prev = observers{old.o}
			}
			b.o = append(prev[:len(prev):len(prev)], o)
			b.iters = append(old.iters[:len(old.iters):len(old.iters)], it)
			if old.every != 0 && (every == 0 || old.every < every) {
				b.every = old.every
			}
		}
		if h.obs.box.CompareAndSwap(old, b) {
			break
		}
	}
	h.obs.since.CompareAndSwap(0, now())
	h.Schedule(func() {}) // as in SetObserver
}

// observers is the Observer of a hub with more than one (AddObserver):
// it calls each in turn. Immutable once stored.
type observers []Observer

func (os observers) LoopDelay(d time.Duration) {
	for _, o := range os {
		o.LoopDelay(d)
	}
}

func (os observers) Iteration(events int) {
	for _, o := range os {
		o.Iteration(events)
	}
}

func (os observers) QueueWait(d time.Duration) {
	for _, o := range os {
		o.QueueWait(d)
	}
}

func (os observers) HandOff(d time.Duration) {
	for _, o := range os {
		o.HandOff(d)
	}
}

// LoopTime returns how long the hub goroutine has been busy and how long it
// has been parked waiting for events since the first SetObserver, as Node's
// event-loop utilization counts them: utilization over an interval is
// Δbusy / (Δbusy + Δidle). Both are zero before SetObserver, and are kept
// from then on, with or without an observer. Both only grow and add up to
// the time since SetObserver. The part of a pass that runs callbacks is
// timed exactly; the part before it (harvesting events, waking waiters) is
// measured in one pass in 16, at random, and credited at the running mean
// of those measurements to every pass, so that most wake-ups read no clock
// (see observing.park). Idle is the rest. Any goroutine; concurrent calls
// are serialised.
func (h *Hub) LoopTime() (busy, idle time.Duration) {
	s := &h.obs
	since := s.since.Load()
	if since == 0 {
		return 0, 0
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var exact, cb int64
	for {
		q := s.seq.Load()
		if q&1 != 0 {
			runtime.Gosched() // the hub is between two stores (park)
			continue
		}
		exact, cb = s.exact.Load(), s.cbStart.Load()
		if s.seq.Load() == q {
			break
		}
	}
	b := exact + s.estBusy.Load()
	n := now() // under mu: readings are taken in the order reported
	if cb != 0 {
		b += max(n-cb, 0)
	}
	total := n - since
	// The raw figure may step ahead of the time (a pass is credited its
	// estimate at its wake-up) or, by at most one pass, back: keep busy
	// and idle non-decreasing and adding up to total. Feasible because
	// lastBusy+lastIdle is an earlier total.
	b = min(max(b, s.lastBusy), total-s.lastIdle)
	s.lastBusy, s.lastIdle = b, total-b
	return time.Duration(b), time.Duration(total - b)
}

// observerBox holds an observer with its sampling period, so that one
// atomic load reads both. Immutable once stored.
type observerBox struct {
	o     Observer
	every uint32 // measure one hand-off in every; 0 for none
	// iters lists each observer (o itself, or each of observers) with the
	// period at which it wants Iteration (polled).
	iters []iterTarget
}

// iterTarget is one observer's share of Iteration: one poll in every.
type iterTarget struct {
	o     Observer
	every uint32 // ≥ 1
}

// iterTargetOf reads o's period (IterationSampler), once.
func iterTargetOf(o Observer) iterTarget {
	t := iterTarget{o: o, every: 1}
	if s, ok := o.(IterationSampler); ok {
		t.every = uint32(min(max(int64(s.IterationEvery()), 1), math.MaxUint32))
	}
	return t
}

// observing is a hub's telemetry state.
//
// Ownership: box is stored by SetObserver (any goroutine) and loaded by
// everyone. since is set once. tick, parked, est, exactNs, cb, woke,
// busyEst, rng, iterBox and iterTicks are the hub goroutine's (plain
// fields). estBusy, exact, cbStart and seq are written by the hub
// goroutine only and read by LoopTime; lastBusy and lastIdle are
// LoopTime's, under mu. queuedAt is written under the hub's qmu.
type observing struct {
	box      atomic.Pointer[observerBox]
	tick     uint32       // hand-offs delivered since the last sampled one
	since    atomic.Int64 // hub clock of the first SetObserver; 0 before
	queuedAt int64        // hub clock at which the queue became non-empty; under qmu
	// lastDelay is the latest loop delay measured (ns), observer or not;
	// written by the hub goroutine, read by Hub.LoopDelay (loopdelay.go).
	lastDelay atomic.Int64

	// Loop-time accounting: busy = exact + estBusy (+ the running callback
	// part, from cbStart). See park.
	estBusy atomic.Int64  // ns credited to pre-callback parts (est as of the last pass that read the clock)
	exact   atomic.Int64  // ns measured in the callback parts of passes that have parked
	cbStart atomic.Int64  // hub clock at which the running pass began its callbacks; 0 when none
	seq     atomic.Uint32 // odd while park updates exact and cbStart together
	parked  bool          // a park is in progress, which the next unpark ends
	est     int64         // ns credited to pre-callback parts, busyEst per pass, up to now
	exactNs int64         // exact's value (hub goroutine's copy)
	cb      int64         // cbStart's value (hub goroutine's copy)
	woke    int64         // hub clock at the wake-up of a sampled pass; 0 in the others
	busyEst int64         // ns: running mean of the sampled pre-callback parts
	rng     uint32        // xorshift state choosing the sampled passes; never 0 once used

	// iterBox is the box whose iters iterTicks counts for: polls since
	// each observer's last Iteration. The hub goroutine's (polled).
	iterBox   *observerBox
	iterTicks []uint32

	mu       sync.Mutex // serialises LoopTime
	lastBusy int64      // ns, LoopTime's last report; under mu
	lastIdle int64      // ns, likewise
}

// parkSampleEvery: one pass in this many (at random) reads the clock at
// its wake-up, to keep busyEst; see park.
const parkSampleEvery = 16

// on returns the observer box, or nil when nobody observes.
func (s *observing) on() *observerBox { return s.box.Load() }

// park notes that the hub goroutine is about to wait for events. Hub
// goroutine only.
//
// Loop-time accounting (fifth pass, docs/telemetry.md). At low load a hub
// wakes several times per RPC, and a clock read costs 20–300 ns, so most
// wake-ups read none. A pass splits into its pre-callback part (from its
// wake-up: harvesting events, waking waiters; bounded work) and, if it
// runs callbacks (AfterFunc, Schedule: arbitrary work, the stalls
// utilization exists to show), its callback part, from the first callback
// (ranCallbacks, which reads the clock) to the park (which reads it
// again): that part is added to exact. Each pass's pre-callback part is
// credited at its wake-up (unpark) as busyEst, the exponentially weighted
// mean of that part's length in one pass in parkSampleEvery, chosen at
// random, which reads the clock at its wake-up and at its first callback or
// its park. So busy is unbiased over many passes, and idle is the elapsed
// time minus busy, computed by LoopTime with its own clock read. LoopTime
// clamps so that busy and idle never decrease: a credit taken at a wake-up
// shows as busy at once, a pass's error is at most its own pre-callback
// part, and a callback part is never estimated. The credits are published
// (estBusy, an atomic store) only by the passes that read the clock (the
// sampled ones, and those with callbacks), not at every wake-up: LoopTime
// may lag by the credits of the passes since, about parkSampleEvery times
// busyEst (tens of microseconds), which the next such pass hands on.
func (s *observing) park() {
	if s.since.Load() == 0 {
		return
	}
	s.parked = true
	if s.cb != 0 {
		n := now()
		s.exactNs += max(n-s.cb, 0)
		s.cb = 0
		s.seq.Add(1)
		s.exact.Store(s.exactNs)
		s.cbStart.Store(0)
		s.seq.Add(1)
		s.estBusy.Store(s.est)
		return
	}
	if s.woke != 0 {
		s.sample(now())
	}
}

// sample feeds busyEst with the pre-callback part of a sampled pass, which
// ended at n. Hub goroutine only.
func (s *observing) sample(n int64) {
	// An exponentially weighted mean (weight 1/8): it follows a change of
	// load within a few dozen samples.
	s.busyEst += (max(n-s.woke, 0) - s.busyEst) / 8
	s.woke = 0
}

// unpark ends the current park, if any, credits the pass it starts with
// busyEst, and returns the hub clock if it read it (one pass in
// parkSampleEvery), 0 otherwise. Hub goroutine only.
func (s *observing) unpark() int64 {
	if !s.parked {
		return 0
	}
	s.parked = false
	s.est += s.busyEst // published at the next pass that reads the clock
	if s.rng == 0 {
		s.rng = uint32(s.since.Load()) | 1
	}
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 17
	s.rng ^= s.rng << 5
	if s.rng%parkSampleEvery != 0 {
		return 0
	}
	s.estBusy.Store(s.est)
	s.woke = now()
	return s.woke
}

// ranCallbacks starts the callback part of the current pass, which is
// timed exactly until its park, unless it has started already. Hub
// goroutine only.
func (s *observing) ranCallbacks() {
	if s.cb != 0 || s.since.Load() == 0 {
		return
	}
	n := now()
	if s.woke != 0 {
		s.sample(n)
	}
	s.cb = n
	s.cbStart.Store(n)
}

// polled ends a park and reports the events of one epoll_wait to each
// observer whose period has come round. Hub goroutine only.
func (s *observing) polled(events int) {
	s.unpark()
	b := s.on()
	if b == nil {
		if s.iterBox != nil {
			s.iterBox, s.iterTicks = nil, nil // keep no removed observer reachable
		}
		return
	}
	if s.iterBox != b {
		s.iterBox = b
		s.iterTicks = make([]uint32, len(b.iters)) // once per SetObserver or AddObserver
	}
	for i, t := range b.iters {
		if s.iterTicks[i]++; s.iterTicks[i] >= t.every {
			s.iterTicks[i] = 0
			t.o.Iteration(events)
		}
	}
}

// queued notes the time a callback entered an empty queue. qmu held.
func (s *observing) queued() {
	if s.on() != nil {
		s.queuedAt = now()
	}
}

// takeQueued returns and clears the time the queue became non-empty. qmu
// held.
func (s *observing) takeQueued() int64 {
	at := s.queuedAt
	s.queuedAt = 0
	return at
}

// queueWait reports the wait of a batch whose first callback was queued at
// at (0: not measured). Hub goroutine only.
func (s *observing) queueWait(at int64) {
	if at == 0 {
		return
	}
	if b := s.on(); b != nil {
		b.o.QueueWait(time.Duration(now() - at))
	}
}

// loopDelay reports how late the earliest due timer ran (late < 0: none
// was due). Hub goroutine only.
func (s *observing) loopDelay(late int64) {
	if late < 0 {
		return
	}
	s.lastDelay.Store(late)
	if b := s.on(); b != nil {
		b.o.LoopDelay(time.Duration(late))
	}
}

// delivering stamps a sampled hand-off before deliver wakes r's waiters.
// Only a direction whose waiter is in Wait (direction.waiting) is stamped,
// so the measured time is a wake-up and never the idle time before a Wait.
// Hub goroutine only.
func (s *observing) delivering(r *Registration, read, write bool) {
	b := s.on()
	if b == nil || b.every == 0 {
		return
	}
	for m, ready := range [2]bool{read, write} {
		d := &r.dirs[m]
		if !ready || !d.waiting() {
			continue
		}
		s.tick++
		if s.tick < b.every {
			continue
		}
		s.tick = 0
		d.probe.wokeAt.Store(now())
	}
}

// handOffProbe measures one direction's hand-offs.
//
// Ownership: wokeAt is stamped by the hub goroutine, only while the
// direction's waiter is in Wait (direction.waiting, which the hand-off
// protocol keeps anyway), and taken by the waiter once it runs (receive).
// The waiter's common path only loads it: no atomic write per Wait unless
// a stamp is there. A Wait that finds its direction ready never announces
// itself (stWait), so it is neither stamped nor counted. A stamp can still
// be left behind when another wake (a deadline, a close, Wake) ends the
// Wait between the hub's check and its stamp; the next receive drops it
// before it parks, so a sample never spans the time between two Waits,
// and that hand-off goes unmeasured.
type handOffProbe struct {
	wokeAt atomic.Int64
}
