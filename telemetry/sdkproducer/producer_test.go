//go:build linux

package sdkproducer_test

import (
	"context"
	"slices"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"go.opentelemetry.io/otel/sdk/metric/metricdata/metricdatatest"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/telemetry/sdkproducer"
	"github.com/hubio/hubio/testutil"
	"github.com/hubio/hubio/transport"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// sizeNames are the metrics the producer takes over.
var sizeNames = []string{telemetry.MetricWriteSize, telemetry.MetricReadSize,
	telemetry.MetricUnixWriteSize, telemetry.MetricUnixReadSize}

// newHub returns a hub closed at cleanup, after the test's leak check.
func newHub(t *testing.T) *poller.Hub {
	t.Helper()
	testutil.VerifyNoLeaks(t)
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// provider returns an SDK provider with one ManualReader, given opts,
// shut down at cleanup.
func provider(t *testing.T, opts ...sdkmetric.ManualReaderOption) (*sdkmetric.MeterProvider, *sdkmetric.ManualReader) {
	r := sdkmetric.NewManualReader(opts...)
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	return mp, r
}

// collected is one collection's metrics of hubio's scope.
type collected struct {
	scopes  []metricdata.ScopeMetrics // those with hubio's scope name
	byName  map[string][]metricdata.Metrics
	version []string // each scope's version
}

func collect(t *testing.T, r sdkmetric.Reader) collected {
	t.Helper()
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	c := collected{byName: map[string][]metricdata.Metrics{}}
	for _, sm := range rm.ScopeMetrics {
		if sm.Scope.Name != telemetry.ScopeName {
			continue
		}
		c.scopes = append(c.scopes, sm)
		c.version = append(c.version, sm.Scope.Version)
		for _, m := range sm.Metrics {
			c.byName[m.Name] = append(c.byName[m.Name], m)
		}
	}
	return c
}

// sizes returns the size metrics of c, one each (fails on a duplicate),
// with the SDK's min and max dropped (the producer carries none) and every
// start time checked to be start.
func (c collected) sizes(t *testing.T, start func(time.Time) bool) map[string]metricdata.Metrics {
	t.Helper()
	out := map[string]metricdata.Metrics{}
	for _, name := range sizeNames {
		ms := c.byName[name]
		switch len(ms) {
		case 0:
			continue
		case 1:
		default:
			t.Fatalf("%s reported %d times in one collection", name, len(ms))
		}
		m := ms[0]
		h := m.Data.(metricdata.Histogram[float64])
		pts := slices.Clone(h.DataPoints)
		for i := range pts {
			if !start(pts[i].StartTime) {
				t.Errorf("%s: start time %v", name, pts[i].StartTime)
			}
			pts[i].Min, pts[i].Max = metricdata.Extrema[float64]{}, metricdata.Extrema[float64]{}
		}
		h.DataPoints = pts
		m.Data = h
		out[name] = m
	}
	return out
}

// pair returns two connected hub conns (client, server) on h, each
// instrumented by tel, closed at cleanup.
func pair(t *testing.T, h *poller.Hub, tel *telemetry.Telemetry, network string) (*transport.Conn, *transport.Conn) {
	t.Helper()
	c, s := hubtest.ConnPair(t, h, network)
	for _, x := range []*transport.Conn{c, s} {
		if err := tel.InstrumentConn(x); err != nil {
			t.Fatal(err)
		}
	}
	return c, s
}

// chunks returns n write sizes spread over the size buckets.
func chunks(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = []int{1, 7, 32, 33, 64, 200, 1000, 1024, 3000, 9000, 40000, 70000}[i%12] + i%5
	}
	return out
}

// TestProducerEqualsTheSDK: for the same traffic, TCP and unix conns,
// with and without address labels, the producer's series are the SDK
// path's (name, unit, description, bounds, attributes, count, sum,
// buckets, temporality, scope), in a first collection, after more
// traffic, and after conns close (closed conns' counts stay).
func TestProducerEqualsTheSDK(t *testing.T) {
	for _, labels := range []bool{false, true} {
		t.Run(map[bool]string{false: "plain", true: "address-labels"}[labels], func(t *testing.T) {
			h := newHub(t)
			mp, sdkReader := provider(t)
			before := time.Now()
			tel, err := telemetry.New(telemetry.WithMeterProvider(mp), telemetry.WithAddressLabels(labels),
				telemetry.WithTCPInfoInterval(0))
			if err != nil {
				t.Fatal(err)
			}
			after := time.Now()
			if s := tel.StartTime(); s.Before(before) || s.After(after) {
				t.Fatalf("StartTime %v not in [%v, %v]", s, before, after)
			}
			// The producer reads the same Telemetry's counts, the SDK path
			// left on: a reader with it alone sees what the SDK's
			// histograms hold once the SDK reader has collected.
			_, prodReader := provider(t, sdkmetric.WithProducer(sdkproducer.ReaderForTest(tel)))
			inWindow := func(s time.Time) bool { return !s.Before(before) && !s.After(after) }
			isStart := func(s time.Time) bool { return s.Equal(tel.StartTime()) }

			compare := func(step string) {
				t.Helper()
				want := collect(t, sdkReader).sizes(t, inWindow)
				pc := collect(t, prodReader)
				got := pc.sizes(t, isStart)
				if len(want) == 0 {
					t.Fatalf("%s: the SDK reported no size histogram", step)
				}
				if len(got) != len(want) {
					t.Fatalf("%s: producer reported %d size histograms, the SDK %d", step, len(got), len(want))
				}
				for name, w := range want {
					metricdatatest.AssertEqual(t, w, got[name], metricdatatest.IgnoreTimestamp())
				}
				for _, v := range pc.version {
					if v != telemetry.ScopeVersion() {
						t.Errorf("%s: producer scope version %q, want %q", step, v, telemetry.ScopeVersion())
					}
				}
			}

			tc1, ts1 := pair(t, h, tel, "tcp")
			tc2, ts2 := pair(t, h, tel, "tcp")
			uc, us := pair(t, h, tel, "unix")
			hubtest.Pump(t, tc1, ts1, chunks(40)...)
			hubtest.Pump(t, ts2, tc2, chunks(25)...)
			hubtest.Pump(t, uc, us, chunks(30)...)
			compare("first collection")

			hubtest.Pump(t, tc2, ts2, chunks(17)...)
			hubtest.Pump(t, us, uc, chunks(9)...)
			compare("second collection")

			// Close one TCP pair and the unix pair: their counts stay in
			// the series (and, with address labels, their series stay).
			for _, c := range []*transport.Conn{tc1, ts1, uc, us} {
				c.Close()
			}
			compare("after closing")
			hubtest.Pump(t, tc2, ts2, chunks(11)...)
			compare("after more traffic")
		})
	}
}

// TestNoDoubleCount: with the producer attached, every size metric is
// reported once per collection (the SDK's histograms of those names
// record nothing), its counts are the conns' syscalls, and they stay
// cumulative across collections and across a conn's close.
func TestNoDoubleCount(t *testing.T) {
	h := newHub(t)
	p := sdkproducer.New(nil)
	mp, r := provider(t, sdkmetric.WithProducer(p))
	tel, err := telemetry.New(telemetry.WithMeterProvider(mp), telemetry.WithTCPInfoInterval(0))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(tel); err != nil {
		t.Fatal(err)
	}
	if err := p.Attach(tel); err == nil {
		t.Error("a second Attach succeeded")
	}
	c, s := pair(t, h, tel, "tcp")

	count := func(step string, wantWrites, wantReads uint64) {
		t.Helper()
		got := collect(t, r)
		for _, sm := range got.scopes {
			if sm.Scope.Version != telemetry.ScopeVersion() {
				t.Errorf("%s: scope version %q", step, sm.Scope.Version)
			}
		}
		for name, want := range map[string]uint64{telemetry.MetricWriteSize: wantWrites, telemetry.MetricReadSize: wantReads} {
			ms := got.byName[name]
			if len(ms) != 1 {
				t.Fatalf("%s: %s reported %d times, want once", step, name, len(ms))
			}
			var n uint64
			for _, dp := range ms[0].Data.(metricdata.Histogram[float64]).DataPoints {
				n += dp.Count
				if !dp.StartTime.Equal(tel.StartTime()) {
					t.Errorf("%s: %s start %v, want %v", step, name, dp.StartTime, tel.StartTime())
				}
			}
			if n != want {
				t.Errorf("%s: %s counts %d syscalls, want %d", step, name, n, want)
			}
		}
	}
	stats := func() (writes, reads uint64) {
		cs, ss := c.Stats(), s.Stats()
		return cs.Writes + ss.Writes, cs.Reads + ss.Reads
	}
	hubtest.Pump(t, c, s, chunks(30)...)
	w, rd := stats()
	count("first", w, rd)
	count("again, no traffic", w, rd)
	hubtest.Pump(t, s, c, chunks(20)...)
	w, rd = stats()
	count("more traffic", w, rd)
	c.Close()
	s.Close()
	count("closed", w, rd)
}

// TestProducerWithoutTelemetry: a producer not attached yet produces
// nothing, and a reader with it collects.
func TestProducerWithoutTelemetry(t *testing.T) {
	_, r := provider(t, sdkmetric.WithProducer(sdkproducer.New(nil)))
	if got := collect(t, r); len(got.scopes) != 0 {
		t.Fatalf("got %d scopes, want none", len(got.scopes))
	}
}
