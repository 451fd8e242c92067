//go:build linux

package telemetry_test

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// byReason returns a sum's points by their hubio.listener.reason.
func byReason[N int64 | float64](t *testing.T, a metricdata.Aggregation) map[string]N {
	t.Helper()
	s, ok := a.(metricdata.Sum[N])
	if !ok {
		t.Fatalf("%T, want a sum", a)
	}
	out := make(map[string]N)
	for _, dp := range s.DataPoints {
		r, _ := dp.Attributes.Value(attribute.Key(telemetry.AttrListenerReason))
		if id, _ := dp.Attributes.Value(attribute.Key(telemetry.AttrAdmissionID)); id.AsInt64() != 1 {
			t.Errorf("point %v: want %s 1", dp.Attributes, telemetry.AttrAdmissionID)
		}
		out[r.AsString()] += dp.Value
	}
	return out
}

func TestInstrumentAdmissionReportsRefusalsByReason(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	if err := tel.InstrumentAdmission(a); err != nil {
		t.Fatal(err)
	}
	if err := tel.InstrumentAdmission(a); err != nil { // twice does nothing
		t.Fatal(err)
	}
	l, err := transport.ListenHub(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	l.SetAdmission(a)
	var clients []net.Conn
	for range 3 {
		c, err := net.Dial("tcp", l.Addr().String())
		if errors.Is(err, syscall.ECONNRESET) {
			continue // refused before the dial saw it connected
		}
		if err != nil {
			t.Fatal(err)
		}
		clients = append(clients, c)
	}
	t.Cleanup(func() {
		for _, c := range clients {
			c.Close()
		}
	})
	// Accept until the listener closes: the first conn is admitted, and
	// the next Accept refuses the other two before it waits.
	accepted := make(chan net.Conn, 3)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			accepted <- c
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		close(accepted)
		for c := range accepted {
			c.Close()
		}
	})
	if !hubtest.WaitFor(10*time.Second, func() bool { return a.Stats().RefusedConns == 2 }) {
		t.Fatalf("stats %+v, want 2 refused", a.Stats())
	}
	m := r.collect()
	refused := byReason[int64](t, m[telemetry.MetricListenerRefused])
	if refused["conns"] != 2 || refused["peer"] != 0 || refused["rate"] != 0 || len(refused) != 3 {
		t.Errorf("%s = %v, want conns 2, peer 0, rate 0", telemetry.MetricListenerRefused, refused)
	}
	paused := byReason[float64](t, m[telemetry.MetricListenerPaused])
	if len(paused) != 2 || paused["rate"] != 0 || paused["loop_delay"] != 0 {
		t.Errorf("%s = %v, want rate and loop_delay at 0", telemetry.MetricListenerPaused, paused)
	}
	if got := intSum(m[telemetry.MetricListenerOpen]); got != 1 {
		t.Errorf("%s = %d, want 1", telemetry.MetricListenerOpen, got)
	}
}
