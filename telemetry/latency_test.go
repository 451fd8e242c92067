//go:build linux

package telemetry_test

import (
	"errors"
	"io"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/telemetry"
)

func TestWriteLatencyHistograms(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithWriteLatency(1))
	h := hubtest.NewHub(t)
	c, s := pair(t, h, "tcp")
	if err := tel.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	sizes := []int{200, 2000, 20000, 100000, 300000}
	for range 5 {
		for _, n := range sizes {
			hubtest.Pump(t, c, s, n)
			if !hubtest.WaitFor(5*time.Second, func() bool {
				st := c.WriteTimestampStats()
				return st.Recorded+st.Lost == st.Sampled
			}) {
				t.Fatalf("samples not accounted for: %+v", c.WriteTimestampStats())
			}
		}
	}
	m := r.collect()
	sn, ssum, _, shi := histStats(m[telemetry.MetricSenderLatency])
	tn, tsum, _, thi := histStats(m[telemetry.MetricTransferLatency])
	if sn == 0 || tn == 0 {
		t.Fatalf("sender latency %d records, transfer latency %d; want both", sn, tn)
	}
	if sn != tn {
		t.Errorf("sender latency has %d records, transfer latency %d: each sample makes one of each", sn, tn)
	}
	if shi >= 1 || thi >= 1 || tsum < ssum {
		t.Errorf("sender latency sum %gs max %gs, transfer latency sum %gs max %gs", ssum, shi, tsum, thi)
	}
	sizes2 := map[int64]bool{}
	for _, set := range pointAttrs(m[telemetry.MetricTransferLatency]) {
		v, ok := set.Value(telemetry.AttrSize)
		if !ok {
			t.Errorf("transfer latency point without size: %v", set)
		}
		sizes2[v.AsInt64()] = true
	}
	for _, want := range []int64{1024, 8192, 65536, 262144} {
		if !sizes2[want] {
			t.Errorf("no transfer latency labelled size=%d (have %v)", want, sizes2)
		}
	}
	t.Logf("sender latency: %d records, mean %.1fµs; transfer latency: %d records, mean %.1fµs",
		sn, ssum/float64(sn)*1e6, tn, tsum/float64(tn)*1e6)
}

func TestWriteLatencyOffByDefault(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	c, s := pair(t, h, "tcp")
	if err := tel.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	hubtest.Pump(t, c, s, 100, 100)
	if st := c.WriteTimestampStats(); st.Sampled != 0 {
		t.Errorf("timestamps sampled without WithWriteLatency: %+v", st)
	}
	if _, ok := r.collect()[telemetry.MetricSenderLatency]; ok {
		t.Error("sender latency exported without WithWriteLatency")
	}
}

// A conn the kernel will not timestamp (here: already reset, so in state
// CLOSE, where SO_TIMESTAMPING's OPT_ID is refused) is counted and left
// unsampled; it works as before.
func TestWriteLatencyRefusalIsCounted(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithWriteLatency(1))
	h := hubtest.NewHub(t)
	c, s := pair(t, h, "tcp")
	if err := s.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if _, err := io.ReadFull(c, make([]byte, 1)); !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after reset: %v", err)
	}
	if err := tel.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	m := r.collect()
	sum, ok := m[telemetry.MetricTimestampRefused].(metricdata.Sum[int64])
	if !ok || len(sum.DataPoints) != 1 || sum.DataPoints[0].Value != 1 {
		t.Errorf("%s = %+v, want 1", telemetry.MetricTimestampRefused, m[telemetry.MetricTimestampRefused])
	}
	if st := c.WriteTimestampStats(); st.Sampled != 0 {
		t.Errorf("refused conn sampled: %+v", st)
	}
}
