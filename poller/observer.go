package poller

import (
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
	b := &observerBox{o: o}
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
	for {
		old := h.obs.box.Load()
		b := &observerBox{o: o, every: every}
		if old != nil {
			prev, ok := old.o.(observers)
			if !ok {
				prev = observers{old.o}
			}
			b.o = append(prev[:len(prev):len(prev)], o)
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
// Δbusy / (Δbusy + Δidle). Both are zero before SetObserver. Both only
// grow and add up to the time since SetObserver. A pass of the loop that
// runs callbacks is timed exactly; the busy time of a pass that only
// harvests events and wakes waiters is measured in one such pass in 16,
// at random, and taken as their running mean in the others, which saves
// a clock read per wake-up (see observing.park).
func (h *Hub) LoopTime() (busy, idle time.Duration) {
	since := h.obs.since.Load()
	if since == 0 {
		return 0, 0
	}
	n := now()
	i := h.obs.idle.Load()
	if at := h.obs.parkedAt.Load(); at != 0 {
		i += max(n-at, 0) // at may be an estimate (see observing.park)
	} else if end := h.obs.estEnd.Load(); end != 0 {
		i += max(n-end, 0) // an estimated pass running past its estimate
	}
	total := n - since
	i = min(max(i, 0), total)
	return time.Duration(total - i), time.Duration(i)
}

// observerBox holds an observer with its sampling period, so that one
// atomic load reads both.
type observerBox struct {
	o     Observer
	every uint32 // measure one hand-off in every; 0 for none
}

// observing is a hub's telemetry state.
//
// Ownership: box is stored by SetObserver (any goroutine) and loaded by
// everyone. tick, woke, busyEst and rng are the hub goroutine's. idle,
// parkedAt and estEnd are written by the hub goroutine only and read by
// LoopTime. queuedAt is written under the hub's qmu. since is set once.
type observing struct {
	box      atomic.Pointer[observerBox]
	tick     uint32       // hand-offs delivered since the last sampled one
	since    atomic.Int64 // hub clock of the first SetObserver; 0 before
	idle     atomic.Int64 // ns parked, over the parks that have ended
	parkedAt atomic.Int64 // hub clock at which the current park began (maybe estimated); 0 while running
	queuedAt int64        // hub clock at which the queue became non-empty; under qmu
	// lastDelay is the latest loop delay measured (ns), observer or not;
	// written by the hub goroutine, read by Hub.LoopDelay (loopdelay.go).
	lastDelay atomic.Int64

	// Loop-time accounting reads the clock once per wake-up, in unpark (a
	// reading that pass hands on to runTimers), and again only where it
	// must; see park.
	estEnd  atomic.Int64 // while running an estimated pass: woke+busyEst, its assumed park; else 0
	woke    int64        // hub clock read by the last unpark
	busyEst int64        // ns: running mean busy time of the sampled estimated passes
	rng     uint32       // xorshift state choosing the sampled passes; never 0 once used
}

// parkSampleEvery: one estimated pass in this many (at random) reads the
// clock at its park, to keep busyEst; see park.
const parkSampleEvery = 16

// on returns the observer box, or nil when nobody observes.
func (s *observing) on() *observerBox { return s.box.Load() }

// park notes that the hub goroutine is about to wait for events. Hub
// goroutine only.
//
// Loop-time accounting. A pass of the loop that only harvests events and
// wakes waiters does bounded work, and at low load such passes run several
// times per RPC, each paying for clock reads (20–300 ns). So a pass is
// "estimated" from its wake-up (unpark) until it runs a callback: its
// park is taken to begin at estEnd, busyEst after its wake-up, without a
// clock read, and LoopTime counts the time after estEnd as idle even
// while the pass still runs. One estimated pass in parkSampleEvery, at
// random, reads the clock at its park to keep busyEst the running mean of
// their busy times, so busy and idle are unbiased over many passes. A pass
// that runs callbacks (AfterFunc, Schedule: arbitrary work, the stalls
// utilization exists to show) becomes exact at its first callback
// (ranCallbacks) and reads the clock at its park, as does the first park
// after SetObserver. Every transition keeps LoopTime's idle and busy
// continuous and non-decreasing in time (the estimate moves time between
// them only before it is reported), and a pass's error is at most its
// own busy time.
func (s *observing) park() {
	if s.on() == nil {
		if s.estEnd.Load() != 0 {
			s.estEnd.Store(0) // SetObserver(nil): count nothing as idle
		}
		return
	}
	end := s.estEnd.Load()
	if end == 0 { // exact pass, or the first park
		s.parkedAt.Store(now())
		return
	}
	s.parkedAt.Store(end)
	s.estEnd.Store(0)
	if s.rng == 0 {
		s.rng = uint32(s.woke) | 1
	}
	s.rng ^= s.rng << 13
	s.rng ^= s.rng >> 17
	s.rng ^= s.rng << 5
	if s.rng%parkSampleEvery == 0 {
		// An exponentially weighted mean (weight 1/8): it follows a
		// change of load within a few dozen samples.
		s.busyEst += (now() - s.woke - s.busyEst) / 8
	}
}

// unpark ends the current park, if any, and returns the hub clock it read
// (0 when there was no park to end, and no reading). The pass it starts is
// estimated (see park). Hub goroutine only.
func (s *observing) unpark() int64 {
	at := s.parkedAt.Load()
	if at == 0 {
		return 0
	}
	n := now()
	s.woke = n
	s.estEnd.Store(n + s.busyEst + 1) // never 0
	s.idle.Add(max(n-at, 0))          // at is estEnd where park did not read the clock
	s.parkedAt.Store(0)
	return n
}

// ranCallbacks makes the current pass exact: it is about to run callbacks.
// The time after estEnd already counts as idle (LoopTime may have reported
// it), so it is committed as idle; from here the pass counts as busy until
// its park reads the clock. Hub goroutine only.
func (s *observing) ranCallbacks() {
	if end := s.estEnd.Load(); end != 0 {
		s.idle.Add(max(now()-end, 0))
		s.estEnd.Store(0)
	}
}

// polled ends a park and reports the events of one epoll_wait. Hub
// goroutine only.
func (s *observing) polled(events int) {
	s.unpark()
	if b := s.on(); b != nil {
		b.o.Iteration(events)
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
// Only a direction whose waiter is parked in Wait is stamped, so the
// measured time is a wake-up and never the idle time before a Wait. Hub
// goroutine only.
func (s *observing) delivering(r *Registration, read, write bool) {
	b := s.on()
	if b == nil || b.every == 0 {
		return
	}
	for m, ready := range [2]bool{read, write} {
		p := &r.dirs[m].probe
		if !ready || !p.parked.Load() {
			continue
		}
		s.tick++
		if s.tick < b.every {
			continue
		}
		s.tick = 0
		p.wokeAt.Store(now())
	}
}

// handOffProbe measures one direction's hand-offs.
//
// Ownership: parked is set and cleared by the waiter around its park;
// wokeAt is stamped by the hub goroutine (only while parked is set) and
// taken by the waiter once it runs.
type handOffProbe struct {
	parked atomic.Bool
	wokeAt atomic.Int64
}
