package telemetry

import (
	"sync"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hubio/hubio/transport"
)

// gRFC A80's per-write metrics, and what hubio counts about them.
const (
	MetricSenderLatency   = "grpc.tcp.sender_latency"
	MetricTransferLatency = "grpc.tcp.transfer_latency"
	// MetricTimestampRefused counts TCP conns whose kernel refused
	// SO_TIMESTAMPING: their writes are not sampled.
	MetricTimestampRefused = "hubio.tcp.timestamping.refused"

	// AttrSize labels grpc.tcp.transfer_latency with A80's size bucket:
	// 1024, 8192, 65536, 262144 or 2097152 (bytes).
	AttrSize = "size"
)

// latencyBuckets are the A80 size buckets, in the order of bucketIndex.
var latencyBuckets = [...]int{1 << 10, 8 << 10, 64 << 10, 256 << 10, 2 << 20}

// WithWriteLatency turns on A80's grpc.tcp.sender_latency and
// grpc.tcp.transfer_latency for the TCP conns instrumented afterwards:
// SO_TIMESTAMPING is set on each, and one write in period
// (TCP_LATENCY_RECORD_PERIOD; transport.DefaultWriteLatencyPeriod, 1000,
// for period 0) is timestamped, its timestamps read on the hub. Off by
// default (period < 0, or the option absent). Where the kernel refuses
// SO_TIMESTAMPING the conn is left unsampled and counted in
// hubio.tcp.timestamping.refused.
func WithWriteLatency(period int) Option {
	return func(c *config) {
		if period == 0 {
			period = transport.DefaultWriteLatencyPeriod
		}
		c.latencyPeriod = period
	}
}

// latencyInstruments are created on the first conn that samples writes,
// so that a Telemetry without WithWriteLatency exports no empty series.
type latencyInstruments struct {
	once             sync.Once
	err              error
	sender, transfer metric.Float64Histogram
	refused          metric.Int64Counter
}

func (l *latencyInstruments) init(m metric.Meter) error {
	l.once.Do(func() {
		var err1, err2, err3 error
		l.sender, err1 = m.Float64Histogram(MetricSenderLatency, metric.WithUnit("s"),
			metric.WithDescription("Time taken by the TCP socket to write the first byte of a write onto the NIC. This includes the latency incurred by traffic shaping, qdisc, throttling, and pacing at the sender. Corresponds to the time taken between the final SCHED timestamp and the SENT timestamp. Sampled periodically."),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))
		l.transfer, err2 = m.Float64Histogram(MetricTransferLatency, metric.WithUnit("s"),
			metric.WithDescription("Time taken to transmit the first size bytes of a write, from the SENT timestamp to the ACKED timestamp. Sampled periodically."),
			metric.WithExplicitBucketBoundaries(secondsBuckets...))
		l.refused, err3 = m.Int64Counter(MetricTimestampRefused, metric.WithUnit("{connection}"),
			metric.WithDescription("TCP conns whose kernel refused SO_TIMESTAMPING: their write latencies are not sampled."))
		for _, err := range []error{err1, err2, err3} {
			if err != nil && l.err == nil {
				l.err = err
			}
		}
	})
	return l.err
}

// latencyObs receives one conn's sampled write latencies on its hub: a
// transport.WriteLatencyObserver. Immutable once made.
type latencyObs struct {
	in       *latencyInstruments
	opts     []metric.RecordOption                      // the conn's attributes
	sizeOpts [len(latencyBuckets)][]metric.RecordOption // the conn's attributes and size
}

// enableLatency turns write sampling on for o's conn if the Telemetry asks
// for it. A refusal is counted, not returned: the conn works unsampled (as
// it does if the instruments cannot be made).
func (t *Telemetry) enableLatency(o *connObs, c *transport.Conn) {
	if t.cfg.latencyPeriod <= 0 || !o.tcp {
		return
	}
	in := &t.lat
	if in.init(t.meter) != nil {
		return
	}
	lo := &latencyObs{in: in, opts: o.opts}
	base := o.attrs.ToSlice()
	for i, b := range latencyBuckets {
		set := attribute.NewSet(append(base[:len(base):len(base)], attribute.Int(AttrSize, b))...)
		lo.sizeOpts[i] = []metric.RecordOption{metric.WithAttributeSet(set)}
	}
	if err := c.EnableWriteTimestamps(t.cfg.latencyPeriod, lo); err != nil {
		in.refused.Add(bg, 1, o.addOpts...)
	}
}

// ObserveWriteLatency records one sampled write.
func (l *latencyObs) ObserveWriteLatency(sender, transfer time.Duration, size int) {
	l.in.sender.Record(bg, sender.Seconds(), l.opts...)
	i := 0
	for i < len(latencyBuckets)-1 && latencyBuckets[i] < size {
		i++
	}
	l.in.transfer.Record(bg, transfer.Seconds(), l.sizeOpts[i]...)
}
