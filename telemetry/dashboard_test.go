//go:build linux

package telemetry_test

import (
	"context"
	"testing"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// TestScopeCarriesAVersion: every metric's scope is the package's import
// path with the module's version.
func TestScopeCarriesAVersion(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	var rm metricdata.ResourceMetrics
	if err := r.r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) == 0 {
		t.Fatal("no metrics")
	}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != "github.com/hubio/hubio/telemetry" || sm.Scope.Version == "" || sm.Scope.Version != telemetry.ScopeVersion() {
			t.Errorf("scope %q version %q, want github.com/hubio/hubio/telemetry, version %q", sm.Scope.Name, sm.Scope.Version, telemetry.ScopeVersion())
		}
	}
}

// TestRetransmitCountersExistAtZero: a TCP conn's TCP_INFO counters are
// exported, at 0, from its first collection, before any sample is taken.
func TestRetransmitCountersExistAtZero(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithTCPInfoInterval(0))
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	c, _ := pair(t, h, "tcp")
	tel.InstrumentConn(c)
	m := r.collect()
	for _, name := range []string{telemetry.MetricPacketsRetrans, telemetry.MetricBytesRetrans,
		telemetry.MetricPacketsSpurious, telemetry.MetricRecurringRetransmit,
		telemetry.MetricPacketsSent, telemetry.MetricBytesSent} {
		s, ok := m[name].(metricdata.Sum[int64])
		if !ok || len(s.DataPoints) != 1 || s.DataPoints[0].Value != 0 {
			t.Errorf("%s at the first collection: %+v, want one point at 0", name, m[name])
		}
	}
}

// TestSizeBucketsStartAboveZero: no size bucket is le=0, which no syscall
// can fall in.
func TestSizeBucketsStartAboveZero(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	c, s := pair(t, h, "tcp")
	tel.InstrumentConn(c)
	hubtest.Pump(t, c, s, 1, 20, 100)
	hist, ok := r.collect()[telemetry.MetricWriteSize].(metricdata.Histogram[float64])
	if !ok || len(hist.DataPoints) != 1 {
		t.Fatalf("write_size: %+v", hist)
	}
	dp := hist.DataPoints[0]
	if len(dp.Bounds) == 0 || dp.Bounds[0] <= 0 {
		t.Fatalf("write_size bounds %v: the first must be above 0", dp.Bounds)
	}
	if dp.BucketCounts[0] != 2 {
		t.Errorf("writes of 1 and 20 bytes: %d in the first bucket (le=%v), want 2", dp.BucketCounts[0], dp.Bounds[0])
	}
}

// TestWriteLatencyRefusedOnMPTCPIsCounted: an MPTCP conn, whose timestamps
// the hub could never read, is counted in hubio.tcp.timestamping.refused
// and not sampled.
func TestWriteLatencyRefusedOnMPTCPIsCounted(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithWriteLatency(1))
	h := hubtest.NewHub(t)
	dialed, _ := hubtest.MPTCPPair(t) // skips without MPTCP on loopback
	nc, err := transport.NewConn(h, dialed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := nc.(*transport.Conn)
	if err := tel.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		if _, err := c.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
	}
	if got := intSum(r.collect()[telemetry.MetricTimestampRefused]); got != 1 {
		t.Errorf("%s = %d for one MPTCP conn, want 1", telemetry.MetricTimestampRefused, got)
	}
	if st := c.WriteTimestampStats(); st.Sampled != 0 {
		t.Errorf("MPTCP conn sampled writes: %+v", st)
	}
}
