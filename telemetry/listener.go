package telemetry

import (
	"context"
	"errors"
	"sync"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hubio/hubio/transport"
)

// Listener admission metrics (transport.Admission), kept apart from the
// socket and hub metrics of instruments.go.
const (
	MetricListenerRefused = "hubio.listener.refused"
	MetricListenerPaused  = "hubio.listener.paused"
	MetricListenerOpen    = "hubio.listener.open"

	// AttrAdmissionID says which Admission (1, 2, ... in the order a
	// Telemetry instruments them); AttrListenerReason why a conn was
	// refused or a listener paused (transport.Reason's String).
	AttrAdmissionID    = "hubio.admission.id"
	AttrListenerReason = "hubio.listener.reason"
)

// InstrumentAdmission makes a report the hubio.listener.* metrics:
// hubio.listener.refused{hubio.listener.reason} (conns refused: conns,
// peer, rate), hubio.listener.paused{hubio.listener.reason} (seconds
// paused: rate, loop_delay) and hubio.listener.open (admitted conns open),
// each with hubio.admission.id. They are read from a.Stats when a reader
// collects: the accept path records nothing. Telemetry holds a weakly:
// an Admission dropped by its program leaves the metrics. Instrumenting one
// twice does nothing.
func (t *Telemetry) InstrumentAdmission(a *transport.Admission) error {
	return t.adms.add(t, a)
}

// InstrumentAdmission instruments a through ForProvider(nil).
func InstrumentAdmission(a *transport.Admission) error {
	t, err := ForProvider(nil)
	if err != nil {
		return err
	}
	return t.InstrumentAdmission(a)
}

// admissionRegistry holds a Telemetry's instrumented Admissions. Its zero
// value is ready; the instruments and their callback are made by the first
// add.
//
// Ownership: everything is under mu, taken by add and by the collection
// callback (which copies the live entries and reads Stats outside it).
type admissionRegistry struct {
	mu       sync.Mutex
	live     map[weak.Pointer[transport.Admission]]admissionEntry
	next     int64 // last id handed out
	refusedC metric.Int64Observable
	pausedC  metric.Float64Observable
	openC    metric.Int64Observable
	reg      metric.Registration
}

// admissionEntry is one instrumented Admission and its attribute set.
type admissionEntry struct {
	a     weak.Pointer[transport.Admission]
	attrs []attribute.KeyValue
}

// add instruments a, creating the instruments on first use.
func (r *admissionRegistry) add(t *Telemetry, a *transport.Admission) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live == nil {
		if err := r.init(t); err != nil {
			return err
		}
	}
	w := weak.Make(a)
	if _, ok := r.live[w]; ok {
		return nil
	}
	r.next++
	r.live[w] = admissionEntry{a: w, attrs: []attribute.KeyValue{attribute.Int64(AttrAdmissionID, r.next)}}
	return nil
}

// init creates the instruments and registers their callback. mu held.
func (r *admissionRegistry) init(t *Telemetry) error {
	m := t.meter
	var errs []error
	var err error
	r.refusedC, err = m.Int64ObservableCounter(MetricListenerRefused, metric.WithUnit("{connection}"),
		metric.WithDescription("Connections a hub listener accepted and closed at once (reset), by reason: conns (total limit), peer (per-peer limit), rate (accept pacing)."))
	errs = append(errs, err)
	r.pausedC, err = m.Float64ObservableCounter(MetricListenerPaused, metric.WithUnit("s"),
		metric.WithDescription("Time hub listeners spent paused (not accepting; conns wait in the backlog), by reason: rate (accept pacing), loop_delay (shedding)."))
	errs = append(errs, err)
	r.openC, err = m.Int64ObservableUpDownCounter(MetricListenerOpen, metric.WithUnit("{connection}"),
		metric.WithDescription("Admitted connections open now (allow-listed ones aside)."))
	errs = append(errs, err)
	if err := errors.Join(errs...); err != nil {
		return err
	}
	reg, err := m.RegisterCallback(r.observe, r.refusedC, r.pausedC, r.openC)
	if err != nil {
		return err
	}
	r.reg = reg
	r.live = make(map[weak.Pointer[transport.Admission]]admissionEntry)
	return nil
}

// refusals and pauses are the reasons each metric reports.
var (
	refusals = []transport.Reason{transport.ReasonConns, transport.ReasonPeer, transport.ReasonRate}
	pauses   = []transport.Reason{transport.ReasonRate, transport.ReasonLoopDelay}
)

// observe is the collection callback: it reads each live Admission's
// Stats, and forgets those that have been collected.
func (r *admissionRegistry) observe(_ context.Context, ob metric.Observer) error {
	type live struct {
		a     *transport.Admission
		attrs []attribute.KeyValue
	}
	r.mu.Lock()
	var ls []live
	for w, e := range r.live {
		a := w.Value()
		if a == nil {
			delete(r.live, w)
			continue
		}
		ls = append(ls, live{a, e.attrs})
	}
	r.mu.Unlock()
	with := func(attrs []attribute.KeyValue, reason transport.Reason) metric.ObserveOption {
		return metric.WithAttributes(append(attrs[:len(attrs):len(attrs)], attribute.String(AttrListenerReason, reason.String()))...)
	}
	for _, l := range ls {
		s := l.a.Stats()
		for _, reason := range refusals {
			ob.ObserveInt64(r.refusedC, int64(s.Refused(reason)), with(l.attrs, reason))
		}
		for _, reason := range pauses {
			ob.ObserveFloat64(r.pausedC, s.Paused(reason).Seconds(), with(l.attrs, reason))
		}
		ob.ObserveInt64(r.openC, s.Open, metric.WithAttributes(l.attrs...))
	}
	return nil
}
