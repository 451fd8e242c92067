//go:build linux

package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// reader is a ManualReader on an SDK provider, shut down at cleanup.
type reader struct {
	t  testing.TB
	r  *sdkmetric.ManualReader
	mp *sdkmetric.MeterProvider
}

func newReader(t testing.TB) *reader {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return &reader{t: t, r: r, mp: mp}
}

// newTelemetry returns a Telemetry recording into a fresh reader.
func newTelemetry(t testing.TB, opts ...telemetry.Option) (*telemetry.Telemetry, *reader) {
	t.Helper()
	r := newReader(t)
	tel, err := telemetry.New(append([]telemetry.Option{telemetry.WithMeterProvider(r.mp)}, opts...)...)
	if err != nil {
		t.Fatal(err)
	}
	return tel, r
}

// collect reads every metric of the hubio scope, by name.
func (r *reader) collect() map[string]metricdata.Aggregation {
	r.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.r.Collect(context.Background(), &rm); err != nil {
		r.t.Fatal(err)
	}
	out := make(map[string]metricdata.Aggregation)
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			continue
		}
		for _, m := range sm.Metrics {
			out[m.Name] = m.Data
		}
	}
	return out
}

// intSum returns the sum of an int64 sum's data points (0 if absent).
func intSum(a metricdata.Aggregation) int64 {
	s, ok := a.(metricdata.Sum[int64])
	if !ok {
		return 0
	}
	var v int64
	for _, dp := range s.DataPoints {
		v += dp.Value
	}
	return v
}

// histStats returns the count, sum, min and max over a histogram's points.
func histStats(a metricdata.Aggregation) (count uint64, sum, lo, hi float64) {
	switch h := a.(type) {
	case metricdata.Histogram[float64]:
		for i, dp := range h.DataPoints {
			count += dp.Count
			sum += dp.Sum
			if m, ok := dp.Min.Value(); ok && (i == 0 || m < lo) {
				lo = m
			}
			if m, ok := dp.Max.Value(); ok && m > hi {
				hi = m
			}
		}
	case metricdata.Histogram[int64]:
		for _, dp := range h.DataPoints {
			count += dp.Count
			sum += float64(dp.Sum)
		}
	}
	return count, sum, lo, hi
}

// pointAttrs returns the attribute sets of a metric's data points.
func pointAttrs(a metricdata.Aggregation) []attribute.Set {
	var out []attribute.Set
	switch d := a.(type) {
	case metricdata.Sum[int64]:
		for _, dp := range d.DataPoints {
			out = append(out, dp.Attributes)
		}
	case metricdata.Histogram[float64]:
		for _, dp := range d.DataPoints {
			out = append(out, dp.Attributes)
		}
	case metricdata.Gauge[float64]:
		for _, dp := range d.DataPoints {
			out = append(out, dp.Attributes)
		}
	}
	return out
}

// pair returns two connected hub conns on h (client, server), closed at
// cleanup. network is "tcp" (loopback) or "unix".
func pair(t testing.TB, h *poller.Hub, network string) (*transport.Conn, *transport.Conn) {
	t.Helper()
	return hubtest.ConnPair(t, h, network)
}
