package telemetry

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hubio/hubio/poller"
)

// InstrumentHub makes h report the hubio.hub.* metrics, identified by the
// attribute hubio.hub.id (1, 2, ... in the order hubs are instrumented by
// this Telemetry) and, for a hub of a poller.Group, hubio.hub.index (its
// index in the group, as in its pprof label hubio.hub). It sets h's
// poller.Observer (replacing any other) and, unless WithLoopDelayProbe
// turned it off, arms the loop-delay probe on h.
// Instrumenting a hub twice does nothing. A closed hub leaves the metrics
// at its next collection.
func (t *Telemetry) InstrumentHub(h *poller.Hub) error {
	if err := h.Err(); err != nil {
		return err
	}
	o, fresh := t.hubs.add(t, h)
	if !fresh {
		return nil
	}
	h.AddObserver(o, t.cfg.handOffEvery)
	o.window.init(h)
	time.AfterFunc(utilStep, o.step)
	if t.cfg.delayProbe > 0 {
		o.probe()
	}
	return nil
}

// InstrumentGroup instruments every hub of g (see InstrumentHub), so that
// each reports its own series from the start, labelled with its index in
// g, before any conn on it is instrumented. A hub that has closed is
// skipped; the error says which, the others are instrumented all the same.
func (t *Telemetry) InstrumentGroup(g *poller.Group) error {
	var errs []error
	for i, h := range g.Hubs() {
		if err := t.InstrumentHub(h); err != nil {
			errs = append(errs, fmt.Errorf("telemetry: hub %d of the group: %w", i, err))
		}
	}
	return errors.Join(errs...)
}

// hubObs is one instrumented hub: a poller.Observer.
//
// Ownership: t, h, id, attrs and opts never change after add. window is
// guarded by its own mutex: the hub's sampling timer writes it, collections
// read it.
type hubObs struct {
	t     *Telemetry
	h     *poller.Hub
	id    int64
	attrs attribute.Set
	opts  []metric.RecordOption

	window loadWindow

	// events counts the events of one poll in eventsEvery (hub goroutine:
	// the hub picks the polls, see IterationEvery) for
	// hubio.hub.loop.events; collections flush it (recordEvents).
	events       *localHist
	recordEvents func(float64)
}

// Utilization window: hubio.hub.utilization is the hub's utilization over
// the last utilSteps×utilStep (10 s) before the collection, from loop times
// sampled by a runtime timer every utilStep, so that every reader of a
// provider, whenever it collects, reads the same figure (Node samples its
// event-loop utilization the same way).
const (
	utilStep  = time.Second
	utilSteps = 10
)

// loadWindow keeps the hub's last utilSteps loop-time samples.
//
// Ownership: mu guards everything; step (a runtime timer's goroutine,
// every utilStep) writes, utilization (collections, any goroutine) reads.
type loadWindow struct {
	mu    sync.Mutex
	busy  [utilSteps]time.Duration
	idle  [utilSteps]time.Duration
	next  int // ring index of the oldest sample, which step overwrites
	taken int // samples taken, up to utilSteps
}

// init takes the first sample: the window starts when the hub is
// instrumented.
func (w *loadWindow) init(h *poller.Hub) {
	busy, idle := h.LoopTime()
	w.mu.Lock()
	w.add(busy, idle)
	w.mu.Unlock()
}

// add stores a sample over the oldest. mu held.
func (w *loadWindow) add(busy, idle time.Duration) {
	w.busy[w.next], w.idle[w.next] = busy, idle
	w.next = (w.next + 1) % utilSteps
	w.taken = min(w.taken+1, utilSteps)
}

// utilization returns busy/(busy+idle) from the oldest sample kept to
// (busy, idle), within [0, 1].
func (w *loadWindow) utilization(busy, idle time.Duration) float64 {
	w.mu.Lock()
	oldest := w.next
	if w.taken < utilSteps {
		oldest = 0
	}
	db, di := busy-w.busy[oldest], idle-w.idle[oldest]
	w.mu.Unlock()
	if db < 0 || di < 0 || db+di <= 0 {
		return 0
	}
	return float64(db) / float64(db+di)
}

// step samples the hub's loop time every utilStep, on a runtime timer's
// goroutine (LoopTime may be read from any): a timer in the hub's own heap
// would make the hub read the clock at every wake-up to see whether it was
// due (docs/telemetry.md, fifth pass). A closed hub ends the chain.
func (o *hubObs) step() {
	if o.h.Err() != nil {
		return
	}
	busy, idle := o.h.LoopTime()
	o.window.mu.Lock()
	o.window.add(busy, idle)
	o.window.mu.Unlock()
	time.AfterFunc(utilStep, o.step)
}

// LoopDelay records how late a timer ran. Hub goroutine.
func (o *hubObs) LoopDelay(d time.Duration) {
	o.t.inst.loopDelay.Record(bg, d.Seconds(), o.opts...)
}

// eventsEvery samples hubio.hub.loop.events: one poll in 16 is counted
// (hand-offs are sampled likewise, one in 256 by default). The
// distribution (and the mean, sum/count) is that of all polls; the exact
// number of polls is hubio.hub.loop.iterations. A hub polls two to four
// times per RPC at low load, so counting every poll cost more than all the
// other hub metrics together.
const eventsEvery = 16

// IterationEvery asks the hub for one poll in eventsEvery
// (poller.IterationSampler): the hub counts the polls, and calls Iteration
// for the sampled ones only.
func (o *hubObs) IterationEvery() int { return eventsEvery }

// Iteration counts the events of one sampled epoll_wait, for
// hubio.hub.loop.events at the next collection. Hub goroutine.
func (o *hubObs) Iteration(events int) { o.events.observe(events) }

// flush hands the events per poll counted since the previous flush to the
// SDK.
func (o *hubObs) flush() { o.events.flush(o.recordEvents) }

// QueueWait records a batch's queue wait. Hub goroutine.
func (o *hubObs) QueueWait(d time.Duration) {
	o.t.inst.queueWait.Record(bg, d.Seconds(), o.opts...)
}

// HandOff records one sampled hand-off. Waiter's goroutine.
func (o *hubObs) HandOff(d time.Duration) {
	o.t.inst.handOff.Record(bg, d.Seconds(), o.opts...)
}

// probe gives the hub a timer to be late for every delayProbe. The period
// is kept by a runtime timer, which at its expiry adds a hub timer due at
// once (probeDue); the hub measures, as for any of its timers, how late it
// ran that one (hubio.hub.loop.delay, Hub.LoopDelay) and then re-arms the
// runtime timer (probe, on the hub goroutine). So the hub's heap holds the
// probe only from its expiry until the hub runs it: a timer pending in the
// heap would make the hub read the clock at every wake-up to see whether
// it was due (docs/telemetry.md, fifth pass). On a closed hub AfterFunc
// never runs, which ends the chain.
func (o *hubObs) probe() {
	time.AfterFunc(o.t.cfg.delayProbe, o.probeDue)
}

// probeDue hands the expired probe to the hub. A runtime timer's goroutine.
func (o *hubObs) probeDue() { o.h.AfterFunc(0, o.probe) }

// hubRegistry holds a Telemetry's instrumented hubs.
type hubRegistry struct {
	mu   sync.Mutex
	hubs map[*poller.Hub]*hubObs
	next int64 // last id handed out
}

func (r *hubRegistry) init() { r.hubs = make(map[*poller.Hub]*hubObs) }

// add returns h's observer, creating it (fresh) on first use.
func (r *hubRegistry) add(t *Telemetry, h *poller.Hub) (o *hubObs, fresh bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if o, ok := r.hubs[h]; ok {
		return o, false
	}
	// Drop hubs that have closed since: with a provider that never
	// collects (the global no-op one), observe would never prune them.
	for old, oo := range r.hubs {
		if old.Err() != nil {
			delete(r.hubs, old)
			oo.flush()
		}
	}
	r.next++
	o = &hubObs{t: t, h: h, id: r.next, events: newLocalHist(eventBuckets)}
	o.recordEvents = func(v float64) { t.inst.iterEvents.Record(bg, int64(v), o.opts...) }
	if i, ok := h.GroupIndex(); ok {
		o.attrs = attribute.NewSet(attribute.Int64(AttrHubID, o.id), attribute.Int64(AttrHubIndex, int64(i)))
	} else {
		o.attrs = attribute.NewSet(attribute.Int64(AttrHubID, o.id))
	}
	o.opts = []metric.RecordOption{metric.WithAttributeSet(o.attrs)}
	r.hubs[h] = o
	return o, true
}

// Attribute sets of the wakeup and callback kinds, built once.
var (
	attrSignalled = attribute.String(AttrWakeup, "signalled")
	attrCoalesced = attribute.String(AttrWakeup, "coalesced")
	attrScheduled = attribute.String(AttrCallbackKind, "scheduled")
	attrTimer     = attribute.String(AttrCallbackKind, "timer")
)

// observe is the callback of the observable hub metrics. It also hands each
// hub's events per poll to hubio.hub.loop.events (see connRegistry.observe).
// Hubs that have closed are dropped.
func (r *hubRegistry) observe(t *Telemetry) metric.Callback {
	return func(_ context.Context, ob metric.Observer) error {
		r.mu.Lock()
		hubs := make([]*hubObs, 0, len(r.hubs))
		for h, o := range r.hubs {
			if h.Err() != nil {
				delete(r.hubs, h)
				o.flush() // its last polls
				continue
			}
			hubs = append(hubs, o)
		}
		r.mu.Unlock()
		for _, o := range hubs {
			o.flush()
		}
		in := &t.inst
		for _, o := range hubs {
			s := o.h.Stats()
			busy, idle := o.h.LoopTime()
			at := metric.WithAttributeSet(o.attrs)
			with := func(kv attribute.KeyValue) metric.ObserveOption {
				return metric.WithAttributes(append(o.attrs.ToSlice(), kv)...)
			}
			ob.ObserveFloat64(in.utilization, o.window.utilization(busy, idle), at)
			ob.ObserveFloat64(in.busy, busy.Seconds(), at)
			ob.ObserveFloat64(in.idle, idle.Seconds(), at)
			ob.ObserveInt64(in.iterations, int64(s.Iterations), at)
			ob.ObserveInt64(in.wakeups, int64(s.Writes), with(attrSignalled))
			ob.ObserveInt64(in.wakeups, int64(s.Signals-min(s.Writes, s.Signals)), with(attrCoalesced))
			ob.ObserveInt64(in.cbs, int64(s.Callbacks), with(attrScheduled))
			ob.ObserveInt64(in.cbs, int64(s.Timers), with(attrTimer))
			ob.ObserveInt64(in.regFDs, s.Registered, at)
		}
		return nil
	}
}
