// Package sdkproducer exports hubio's syscall-size histograms
// (grpc.tcp.write_size, grpc.tcp.read_size, hubio.unix.write_size,
// hubio.unix.read_size) to an OpenTelemetry SDK reader as a
// metric.Producer, in place of the SDK's own histograms of those names.
//
// By default telemetry hands each conn's locally counted sizes to the SDK's
// histograms at collection: one SDK Record per syscall counted, about 1–2%
// of CPU per RPC for a lone client at one RPC in flight (docs/telemetry.md).
// A Producer instead turns the local counts into histogram points when the
// reader collects, at a cost that grows with the number of series, not of
// syscalls. The series are the same: name, unit, description, bucket
// bounds, attributes, scope (telemetry.ScopeName and ScopeVersion),
// cumulative temporality from the Telemetry's start, with counts, sums and
// bucket counts equal to the SDK's; closed conns' counts stay in their
// series. Unlike the SDK's, a point carries no min and max (OTLP's are
// optional; the SDK's were bucket means anyway).
//
// Using it takes one option on each reader of the provider the Telemetry
// records through:
//
//	sdkmetric.NewPeriodicReader(exp, sdkmetric.WithProducer(sdkproducer.New(tel)))
//
// Limits: the points are always cumulative (a reader configured for delta
// temporality gets them cumulative), Views do not apply to them, and a
// reader without the producer gets no size histograms at all. This package
// is a module of its own so that hubio's main module does not depend on
// the SDK.
package sdkproducer

import (
	"context"
	"errors"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel/sdk/instrumentation"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/telemetry"
)

// Producer is a sdkmetric.Producer of one Telemetry's syscall-size
// histograms. Its methods are safe for concurrent use; one Producer may be
// passed to several readers.
type Producer struct {
	t atomic.Pointer[telemetry.Telemetry] // set once, by New or Attach
}

var _ sdkmetric.Producer = (*Producer)(nil)

// New returns a Producer of t's size histograms and hands them over to it
// (t.ProduceSizes): from then on the SDK's write_size and read_size
// histograms of t record nothing. Make it, and pass it to the readers,
// before the provider first collects. t may be nil when the Telemetry is
// made later, on the provider the Producer's reader belongs to: Attach it
// then.
func New(t *telemetry.Telemetry) *Producer {
	p := &Producer{}
	if t != nil {
		p.Attach(t) // cannot fail: p has none yet
	}
	return p
}

// errAttached is Attach's error for a Producer that has a Telemetry.
var errAttached = errors.New("sdkproducer: the producer has a Telemetry already")

// Attach makes p the producer of t's size histograms (t.ProduceSizes), for
// a Producer made with New(nil). A Producer serves one Telemetry: Attach
// fails if p has one.
func (p *Producer) Attach(t *telemetry.Telemetry) error {
	if !p.t.CompareAndSwap(nil, t) {
		return errAttached
	}
	t.ProduceSizes()
	return nil
}

// Produce returns the size histograms of p's Telemetry, cumulative since
// its start, under its scope; nothing when p has no Telemetry or no conn
// has counted a syscall. It is the sdkmetric.Producer method.
func (p *Producer) Produce(context.Context) ([]metricdata.ScopeMetrics, error) {
	t := p.t.Load()
	if t == nil {
		return nil, nil
	}
	hs := t.SizeHistograms()
	if len(hs) == 0 {
		return nil, nil
	}
	now, start := time.Now(), t.StartTime()
	sm := metricdata.ScopeMetrics{
		Scope:   instrumentation.Scope{Name: telemetry.ScopeName, Version: telemetry.ScopeVersion()},
		Metrics: make([]metricdata.Metrics, 0, len(hs)),
	}
	for _, h := range hs {
		pts := make([]metricdata.HistogramDataPoint[float64], len(h.Points))
		for i, p := range h.Points {
			pts[i] = metricdata.HistogramDataPoint[float64]{
				Attributes:   p.Attributes,
				StartTime:    start,
				Time:         now,
				Count:        p.Count,
				Bounds:       h.Bounds,
				BucketCounts: p.BucketCounts,
				Sum:          float64(p.Sum),
			}
		}
		sm.Metrics = append(sm.Metrics, metricdata.Metrics{
			Name:        h.Name,
			Description: h.Description,
			Unit:        h.Unit,
			Data: metricdata.Histogram[float64]{
				DataPoints:  pts,
				Temporality: metricdata.CumulativeTemporality,
			},
		})
	}
	return []metricdata.ScopeMetrics{sm}, nil
}
