//go:build linux

package telemetry_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/telemetry"
)

// installLaterOnce marks that TestProviderInstalledLaterCountsHubOnce has
// installed the global provider in this process.
var installLaterOnce atomic.Bool

// TestProviderInstalledLaterCountsHubOnce: a program that instruments a
// conn before otel.SetMeterProvider and another after it still has one
// Telemetry on the global provider, so the hub reports one series with the
// right value (not each hub twice as hubio.hub.id=1).
func TestProviderInstalledLaterCountsHubOnce(t *testing.T) {
	if !installLaterOnce.CompareAndSwap(false, true) {
		// OTel's global delegates to the first provider installed only, so
		// "before the install" exists once per process (go test -count=N).
		t.Skip("the global provider was installed by an earlier run of this test in this process")
	}
	h := hubtest.NewHub(t)
	c, s := pair(t, h, "tcp")
	before, err := telemetry.ForProvider(nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := telemetry.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	r := newReader(t)
	otel.SetMeterProvider(r.mp)
	if err := telemetry.InstrumentConn(s); err != nil {
		t.Fatal(err)
	}
	after, err := telemetry.ForProvider(nil)
	if err != nil {
		t.Fatal(err)
	}
	if before != after {
		t.Error("ForProvider(nil) returned a second Telemetry after otel.SetMeterProvider")
	}
	m := r.collect()
	if fds := intSum(m[telemetry.MetricHubRegistered]); fds != 2 {
		t.Errorf("registered_fds = %d for one hub with 2 conns, want 2", fds)
	}
	if n := intSum(m[telemetry.MetricConnectionsCreated]); n != 2 {
		t.Errorf("connections_created = %d, want 2", n)
	}
}

// TestUtilizationSameForEveryReader: two readers on one provider read the
// same utilization whichever collects first; a collection by one does not
// shorten the other's window.
func TestUtilizationSameForEveryReader(t *testing.T) {
	ra, rb := sdkmetric.NewManualReader(), sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(ra), sdkmetric.WithReader(rb))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	tel, err := telemetry.New(telemetry.WithMeterProvider(mp), telemetry.WithLoopDelayProbe(0))
	if err != nil {
		t.Fatal(err)
	}
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	util := func(r *sdkmetric.ManualReader) float64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := r.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if g, ok := m.Data.(metricdata.Gauge[float64]); ok && m.Name == telemetry.MetricHubUtilization && len(g.DataPoints) == 1 {
					return g.DataPoints[0].Value
				}
			}
		}
		t.Fatal("no utilization point")
		return 0
	}
	util(ra)
	util(rb)
	// Spin 100 ms on the hub, then let it park for 200 ms.
	done := make(chan struct{})
	h.Schedule(func() {
		for t0 := time.Now(); time.Since(t0) < 100*time.Millisecond; {
		}
		close(done)
	})
	<-done
	_, idle0 := h.LoopTime()
	if !hubtest.WaitFor(10*time.Second, func() bool { _, idle := h.LoopTime(); return idle-idle0 >= 200*time.Millisecond }) {
		t.Fatal("the hub accounted less than 200 ms parked in 10 s")
	}
	a := util(ra)
	b := util(rb) // right after a: its window must not start at a's collection
	if a <= 0 {
		t.Fatalf("reader A: utilization %v after 100 ms of work, want > 0", a)
	}
	if b < a*0.8 || b > a*1.25 {
		t.Errorf("reader B read %v right after reader A read %v; want the same window", b, a)
	}
}

// countingObserver is a program's own hub observer.
type countingObserver struct{ iterations atomic.Int64 }

func (o *countingObserver) LoopDelay(time.Duration) {}
func (o *countingObserver) Iteration(int)           { o.iterations.Add(1) }
func (o *countingObserver) QueueWait(time.Duration) {}
func (o *countingObserver) HandOff(time.Duration)   {}

// TestInstrumentHubKeepsProgramObserver: instrumenting a hub leaves the
// observer the program set in place, and telemetry records as well.
func TestInstrumentHubKeepsProgramObserver(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithLoopDelayProbe(0))
	h := hubtest.NewHub(t)
	mine := &countingObserver{}
	h.SetObserver(mine, 0)
	if err := tel.InstrumentHub(h); err != nil {
		t.Fatal(err)
	}
	start := mine.iterations.Load()
	for range 40 { // loop.events counts one poll in 16
		done := make(chan struct{})
		h.Schedule(func() { close(done) })
		<-done
	}
	if !hubtest.WaitFor(10*time.Second, func() bool { return mine.iterations.Load() >= start+3 }) {
		t.Errorf("the program's observer saw %d iterations over 40 wake-ups after InstrumentHub, want ≥ 3",
			mine.iterations.Load()-start)
	}
	if n, _, _, _ := histStats(r.collect()[telemetry.MetricHubIterEvents]); n == 0 {
		t.Error("telemetry recorded no loop.events beside the program's observer")
	}
}
