//go:build linux

package telemetry_test

import (
	"errors"
	"net"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// chunks are write sizes from 1 byte to past a socket buffer.
var chunks = []int{1, 100, 4096, 65536, 1 << 20, 7}

func TestOpMetricsCountEveryByteAndConnection(t *testing.T) {
	type names struct{ created, count, writes, writeSize, reads, readSize string }
	tcpNames := names{telemetry.MetricConnectionsCreated, telemetry.MetricConnectionCount,
		telemetry.MetricSyscallWrites, telemetry.MetricWriteSize, telemetry.MetricSyscallReads, telemetry.MetricReadSize}
	unixNames := names{telemetry.MetricUnixConnectionsCreated, telemetry.MetricUnixConnectionCount,
		telemetry.MetricUnixSyscallWrites, telemetry.MetricUnixWriteSize, telemetry.MetricUnixSyscallReads, telemetry.MetricUnixReadSize}
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			n, other := tcpNames, unixNames
			if network == "unix" {
				n, other = unixNames, tcpNames
			}
			tel, r := newTelemetry(t)
			h := hubtest.NewHub(t)
			c, s := pair(t, h, network)
			if err := tel.InstrumentConn(c); err != nil {
				t.Fatal(err)
			}
			if err := tel.InstrumentConn(s); err != nil {
				t.Fatal(err)
			}
			written := hubtest.Pump(t, c, s, chunks...)
			written += hubtest.Pump(t, s, c, 10, 20)

			m := r.collect()
			wn, wsum, _, _ := histStats(m[n.writeSize])
			rn, rsum, _, _ := histStats(m[n.readSize])
			if int(wsum) != written {
				t.Errorf("write_size sums to %v bytes, want the %d written", wsum, written)
			}
			if int(rsum) != written {
				t.Errorf("read_size sums to %v bytes, want the %d written", rsum, written)
			}
			cs, ss := c.Stats(), s.Stats()
			if got := intSum(m[n.writes]); uint64(got) != cs.Writes+ss.Writes || uint64(got) != wn {
				t.Errorf("syscall_writes = %d, want %d (Stats) and %d (write_size records)", got, cs.Writes+ss.Writes, wn)
			}
			if got := intSum(m[n.reads]); uint64(got) != cs.Reads+ss.Reads || uint64(got) != rn {
				t.Errorf("syscall_reads = %d, want %d (Stats) and %d (read_size records)", got, cs.Reads+ss.Reads, rn)
			}
			if got := cs.BytesWritten + ss.BytesWritten; got != uint64(written) {
				t.Errorf("Stats count %d bytes written, want %d", got, written)
			}
			if got := intSum(m[n.created]); got != 2 {
				t.Errorf("connections_created = %d, want 2", got)
			}
			if got := intSum(m[n.count]); got != 2 {
				t.Errorf("connection_count = %d while open, want 2", got)
			}

			c.Close()
			s.Close()
			m = r.collect()
			if got := intSum(m[n.count]); got != 0 {
				t.Errorf("connection_count = %d after close, want 0", got)
			}
			if got := intSum(m[n.created]); got != 2 {
				t.Errorf("connections_created = %d after close, want 2", got)
			}
			if got := intSum(m[n.writes]); uint64(got) != wn {
				t.Errorf("syscall_writes = %d after close, want %d: closed conns must keep counting", got, wn)
			}
			for _, name := range []string{other.created, other.count, other.writes, other.writeSize, other.reads, other.readSize} {
				if _, ok := m[name]; ok {
					t.Errorf("%s conns recorded %s", network, name)
				}
			}
			_, hasRTT := m[telemetry.MetricMinRTT]
			if network == "unix" && hasRTT {
				t.Errorf("a unix conn recorded %s; unix sockets get hubio.unix.* op metrics only", telemetry.MetricMinRTT)
			}
			if network == "tcp" && !hasRTT {
				t.Errorf("no %s from the sample taken at close", telemetry.MetricMinRTT)
			}
		})
	}
}

func TestTCPInfoOnLoopback(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithTCPInfoInterval(20*time.Millisecond))
	h := hubtest.NewHub(t)
	c, s := pair(t, h, "tcp")
	tel.InstrumentConn(c)
	tel.InstrumentConn(s)
	written := hubtest.Pump(t, c, s, chunks...)

	info, err := c.TCPInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.MinRTT <= 0 || info.BytesSent < uint64(written) || info.PacketsSent == 0 {
		t.Errorf("TCPInfo after writing %d bytes: %+v", written, info)
	}
	// The timer samples on its own, before any close.
	var m map[string]metricdata.Aggregation
	if !hubtest.WaitFor(10*time.Second, func() bool {
		m = r.collect()
		n, _, _, _ := histStats(m[telemetry.MetricMinRTT])
		return n >= 4 && intSum(m[telemetry.MetricBytesSent]) >= int64(written)
	}) {
		n, _, _, _ := histStats(m[telemetry.MetricMinRTT])
		t.Fatalf("after 10 s with a 20 ms interval: %d min_rtt samples, bytes_sent %d (wrote %d)",
			n, intSum(m[telemetry.MetricBytesSent]), written)
	}
	_, _, lo, hi := histStats(m[telemetry.MetricMinRTT])
	if lo <= 0 || hi >= 0.010 {
		t.Errorf("loopback min_rtt in [%v s, %v s], want above 0 and below 10 ms", lo, hi)
	}
	if got := intSum(m[telemetry.MetricPacketsSent]); got <= 0 {
		t.Errorf("packets_sent = %d, want > 0", got)
	}
	c.Close()
	s.Close()
	m = r.collect()
	if got := intSum(m[telemetry.MetricBytesSent]); got < int64(written) {
		t.Errorf("bytes_sent = %d after close, want ≥ %d written", got, written)
	}
}

func TestTCPInfoOfUnixConnIsUnsupported(t *testing.T) {
	c, _ := pair(t, hubtest.NewHub(t), "unix")
	_, err := c.TCPInfo()
	var op *net.OpError
	if !errors.As(err, &op) || !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Errorf("TCPInfo on a unix conn: %v, want a *net.OpError wrapping EOPNOTSUPP", err)
	}
}

func TestAddressLabels(t *testing.T) {
	for _, on := range []bool{false, true} {
		tel, r := newTelemetry(t, telemetry.WithAddressLabels(on))
		c, _ := pair(t, hubtest.NewHub(t), "tcp")
		tel.InstrumentConn(c)
		c.Write([]byte("x"))
		for _, set := range pointAttrs(r.collect()[telemetry.MetricWriteSize]) {
			_, hasPeer := set.Value("network.peer.port")
			_, hasLocal := set.Value("network.local.address")
			if hasPeer != on || hasLocal != on {
				t.Errorf("WithAddressLabels(%v): write_size attributes %v", on, set.ToSlice())
			}
		}
	}
}

func TestInstrumentTwice(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	c, _ := pair(t, h, "tcp")
	if err := tel.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	if err := tel.InstrumentConn(c); err == nil {
		t.Error("second InstrumentConn of a conn succeeded")
	}
	tel.InstrumentHub(h)
	tel.InstrumentHub(h)
	m := r.collect()
	if got := intSum(m[telemetry.MetricConnectionsCreated]); got != 1 {
		t.Errorf("connections_created = %d, want 1", got)
	}
	if n := len(pointAttrs(m[telemetry.MetricHubUtilization])); n != 1 {
		t.Errorf("%d utilization series for one hub instrumented twice, want 1", n)
	}
}

func TestIdleHubUtilization(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithLoopDelayProbe(0))
	h := hubtest.NewHub(t)
	if err := tel.InstrumentHub(h); err != nil {
		t.Fatal(err)
	}
	r.collect() // opens the window
	if !hubtest.WaitFor(10*time.Second, func() bool { _, idle := h.LoopTime(); return idle >= 200*time.Millisecond }) {
		t.Fatal("an idle hub accounted less than 200 ms parked in 10 s")
	}
	g, ok := r.collect()[telemetry.MetricHubUtilization].(metricdata.Gauge[float64])
	if !ok || len(g.DataPoints) != 1 {
		t.Fatalf("utilization: %+v", g)
	}
	u := g.DataPoints[0].Value
	if u < 0 || u > 0.1 {
		t.Errorf("idle hub utilization %v, want within [0, 0.1]", u)
	}
	if id, ok := g.DataPoints[0].Attributes.Value(telemetry.AttrHubID); !ok || id.AsInt64() != 1 {
		t.Errorf("utilization attributes %v, want %s=1", g.DataPoints[0].Attributes.ToSlice(), telemetry.AttrHubID)
	}
}

func TestBusyHubUtilizationStaysInRange(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	r.collect()
	// Keep the hub busy with a callback that spins for 100 ms, and queue
	// another one behind it.
	started, done := make(chan struct{}), make(chan struct{})
	h.Schedule(func() {
		close(started)
		for t0 := time.Now(); time.Since(t0) < 100*time.Millisecond; {
		}
	})
	<-started
	h.Schedule(func() { close(done) })
	<-done
	g := r.collect()[telemetry.MetricHubUtilization].(metricdata.Gauge[float64])
	u := g.DataPoints[0].Value
	if u <= 0 || u > 1 {
		t.Errorf("utilization of a hub that spun 100 ms: %v, want within (0, 1]", u)
	}
	busy, _ := h.LoopTime()
	if busy < 100*time.Millisecond {
		t.Errorf("LoopTime busy %v after ≥100 ms of callbacks", busy)
	}
	n, sum, _, hi := histStats(r.collect()[telemetry.MetricHubQueueWait])
	if n < 2 || sum <= 0 || hi < 0.02 {
		t.Errorf("queue wait: %d records, sum %v s, max %v s; a callback queued behind 100 ms of work", n, sum, hi)
	}
}

// TestLoopDelayProbeSeesAStall: the probe's period is kept by a runtime
// timer that hands the hub a timer due at once, so a hub stuck in a
// callback still reads as late by about the stall (less at most one
// probe period), as when the probe sat in the hub's heap.
func TestLoopDelayProbeSeesAStall(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithLoopDelayProbe(5*time.Millisecond))
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	// Let the probe run a few times first, so that its chain is armed.
	if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Timers >= 3 }) {
		t.Fatalf("%d timers run in 10 s with a 5 ms probe", h.Stats().Timers)
	}
	const stall = 80 * time.Millisecond
	done := make(chan struct{})
	h.Schedule(func() {
		for t0 := time.Now(); time.Since(t0) < stall; {
		}
		close(done)
	})
	<-done
	var hi float64
	if !hubtest.WaitFor(10*time.Second, func() bool {
		_, _, _, hi = histStats(r.collect()[telemetry.MetricHubLoopDelay])
		return hi >= 0.04
	}) {
		t.Errorf("loop delay at most %v s after the hub stalled %v under a 5 ms probe", hi, stall)
	}
	if d := h.LoopDelay(); d <= 0 {
		t.Errorf("Hub.LoopDelay %v with a probe armed, want > 0", d)
	}
}

func TestLoopDelayRecorded(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithLoopDelayProbe(5*time.Millisecond))
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	var n uint64
	var lo float64
	if !hubtest.WaitFor(10*time.Second, func() bool {
		n, _, lo, _ = histStats(r.collect()[telemetry.MetricHubLoopDelay])
		return n >= 3
	}) {
		t.Fatalf("%d loop delay records after 10 s with a 5 ms probe", n)
	}
	if lo < 0 {
		t.Errorf("negative loop delay %v", lo)
	}
	m := r.collect()
	if got := intSum(m[telemetry.MetricHubIterations]); got <= 0 {
		t.Errorf("iterations = %d", got)
	}
	// loop.events counts one poll in 16: the 5 ms probe makes more.
	if !hubtest.WaitFor(10*time.Second, func() bool {
		n, _, _, _ := histStats(r.collect()[telemetry.MetricHubIterEvents])
		return n > 0
	}) {
		t.Error("no events-per-iteration records in 10 s")
	}
	if c, ok := m[telemetry.MetricHubCallbacks].(metricdata.Sum[int64]); !ok || len(c.DataPoints) != 2 {
		t.Errorf("callbacks: want scheduled and timer series, got %+v", m[telemetry.MetricHubCallbacks])
	}
}

func TestHandOffRecorded(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithHandOffSampling(1))
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	c, s := pair(t, h, "tcp")
	// Each small write wakes the reader parked in Read: a hand-off.
	got := make(chan error, 1)
	go func() {
		b := make([]byte, 1)
		for range 20 {
			if _, err := s.Read(b); err != nil {
				got <- err
				return
			}
			if _, err := s.Write(b); err != nil {
				got <- err
				return
			}
		}
		got <- nil
	}()
	b := make([]byte, 1)
	for range 20 {
		c.Write(b)
		c.Read(b)
	}
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	m := r.collect()
	n, _, lo, hi := histStats(m[telemetry.MetricHubHandOff])
	if n == 0 {
		t.Fatal("no hand-off latency recorded over 40 parked reads")
	}
	if lo < 0 || hi > 5 {
		t.Errorf("hand-off latencies in [%v s, %v s]", lo, hi)
	}
	if w := intSum(m[telemetry.MetricHubWakeups]); w <= 0 {
		t.Errorf("wakeups = %d", w)
	}
	if fds := intSum(m[telemetry.MetricHubRegistered]); fds != 2 {
		t.Errorf("registered_fds = %d, want 2", fds)
	}
}

func TestClosedHubLeavesMetrics(t *testing.T) {
	tel, r := newTelemetry(t)
	h := hubtest.NewHub(t)
	tel.InstrumentHub(h)
	if len(pointAttrs(r.collect()[telemetry.MetricHubUtilization])) != 1 {
		t.Fatal("no utilization series for an open hub")
	}
	h.Close()
	if n := len(pointAttrs(r.collect()[telemetry.MetricHubUtilization])); n != 0 {
		t.Errorf("%d utilization series after the hub closed, want 0", n)
	}
}

// TestRecordingAllocatesNothing checks the hot path: a write and a read on
// instrumented conns, with an SDK provider and with a no-op one.
func TestRecordingAllocatesNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		opt  telemetry.Option
	}{
		{"sdk", nil},
		{"noop", telemetry.WithMeterProvider(noop.NewMeterProvider())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var opts []telemetry.Option
			if tc.opt != nil {
				opts = append(opts, tc.opt)
			}
			tel, _ := newTelemetry(t, append(opts, telemetry.WithHandOffSampling(1))...)
			h := hubtest.NewHub(t)
			tel.InstrumentHub(h)
			c, s := pair(t, h, "tcp")
			tel.InstrumentConn(c)
			tel.InstrumentConn(s)
			b := make([]byte, 64)
			c.Write(b)
			s.Read(b)
			allocs := testing.AllocsPerRun(200, func() {
				c.Write(b)
				s.Read(b)
			})
			if allocs != 0 {
				t.Errorf("%v allocations per write+read on instrumented conns, want 0", allocs)
			}
		})
	}
}

// TestClosedHubsAreForgotten checks that a Telemetry whose provider never
// collects (as the global no-op one) does not keep closed hubs: instrumenting
// a new hub drops them.
func TestClosedHubsAreForgotten(t *testing.T) {
	tel, r := newTelemetry(t)
	for range 3 {
		h := hubtest.NewHub(t)
		tel.InstrumentHub(h)
		h.Close()
	}
	if got := telemetry.HubsForTest(tel); got != 1 {
		t.Errorf("%d hubs held after three closed hubs were instrumented one after another, want 1 (the last)", got)
	}
	r.collect()
	if got := telemetry.HubsForTest(tel); got != 0 {
		t.Errorf("%d hubs held after a collection, want 0", got)
	}
}

func TestInstrumentClosedConn(t *testing.T) {
	tel, r := newTelemetry(t)
	c, _ := pair(t, hubtest.NewHub(t), "tcp")
	c.Close()
	if err := tel.InstrumentConn(c); err != nil {
		t.Fatal(err)
	}
	m := r.collect()
	if got := intSum(m[telemetry.MetricConnectionCount]); got != 0 {
		t.Errorf("connection_count = %d after instrumenting a closed conn, want 0", got)
	}
}

// TestDroppedInstrumentedConnIsCollected: telemetry holds a conn weakly and
// its TCP_INFO timer does not reach the conn, so a conn dropped unclosed is
// still garbage-collected (transport then closes its fd) and leaves
// connection_count as a closed one does.
func TestDroppedInstrumentedConnIsCollected(t *testing.T) {
	tel, r := newTelemetry(t, telemetry.WithTCPInfoInterval(time.Hour))
	h := hubtest.NewHub(t)
	l, err := transport.ListenHub(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	peer, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	func() {
		c, err := l.AcceptHub()
		if err != nil {
			t.Fatal(err)
		}
		if err := tel.InstrumentConn(c); err != nil {
			t.Fatal(err)
		}
	}() // c is dropped unclosed, with a TCP_INFO timer armed on the hub
	if got := intSum(r.collect()[telemetry.MetricConnectionCount]); got != 1 {
		t.Fatalf("connection_count = %d with the conn open, want 1", got)
	}
	gone := hubtest.WaitFor(10*time.Second, func() bool {
		runtime.GC()
		return h.Stats().Registered == 1 && // the listener's only
			intSum(r.collect()[telemetry.MetricConnectionCount]) == 0
	})
	if !gone {
		t.Fatalf("dropped conn not collected: %d fds registered, connection_count %d",
			h.Stats().Registered, intSum(r.collect()[telemetry.MetricConnectionCount]))
	}
	peer.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := peer.Read(make([]byte, 1)); err == nil {
		t.Fatal("the peer of the collected conn read data, want EOF")
	}
}

// TestGroupHubsAreLabelledByIndex: each hub of a group reports its own
// series, labelled with its index in the group (as its pprof label is),
// the per-kind series (wakeups) included; a hub outside a group has no
// index.
func TestGroupHubsAreLabelledByIndex(t *testing.T) {
	tel, r := newTelemetry(t)
	lone := hubtest.NewHub(t) // and the leak check, after the group's Close below
	if err := tel.InstrumentHub(lone); err != nil {
		t.Fatal(err)
	}
	g, err := poller.NewGroup(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	if err := tel.InstrumentGroup(g); err != nil {
		t.Fatal(err)
	}
	m := r.collect()
	for _, name := range []string{telemetry.MetricHubUtilization, telemetry.MetricHubWakeups} {
		indexes := map[int64]bool{}
		ids := map[int64]bool{}
		unindexed := 0
		for _, set := range pointAttrs(m[name]) {
			id, ok := set.Value(telemetry.AttrHubID)
			if !ok {
				t.Errorf("%s: a series without %s: %v", name, telemetry.AttrHubID, set.ToSlice())
				continue
			}
			ids[id.AsInt64()] = true
			if i, ok := set.Value(telemetry.AttrHubIndex); ok {
				indexes[i.AsInt64()] = true
			} else {
				unindexed++
			}
		}
		if len(ids) != 4 {
			t.Errorf("%s: series for %d hub ids, want 4 (3 in the group, 1 alone)", name, len(ids))
		}
		for i := range int64(3) {
			if !indexes[i] {
				t.Errorf("%s: no series with %s=%d; have %v", name, telemetry.AttrHubIndex, i, indexes)
			}
		}
		if len(indexes) != 3 || unindexed == 0 {
			t.Errorf("%s: indexes %v and %d series without one: want 0..2, and the lone hub's without", name, indexes, unindexed)
		}
	}
	for i, h := range g.Hubs() {
		if got, ok := h.GroupIndex(); !ok || got != i {
			t.Errorf("hub %d: GroupIndex() = %d, %v", i, got, ok)
		}
	}
	if got, ok := lone.GroupIndex(); ok || got != -1 {
		t.Errorf("lone hub: GroupIndex() = %d, %v; want -1, false", got, ok)
	}
}

// TestInstrumentGroupSkipsAClosedHub: a closed hub of the group is named in
// the error, and the live ones are instrumented all the same.
func TestInstrumentGroupSkipsAClosedHub(t *testing.T) {
	tel, r := newTelemetry(t)
	hubtest.NewHub(t) // the leak check, after the group's Close below
	g, err := poller.NewGroup(3)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { g.Close() })
	g.Hubs()[1].Close()
	err = tel.InstrumentGroup(g)
	if err == nil || !errors.Is(err, net.ErrClosed) || !strings.Contains(err.Error(), "hub 1 of the group") {
		t.Fatalf("InstrumentGroup with hub 1 closed: %v; want an error naming hub 1 and matching net.ErrClosed", err)
	}
	indexes := map[int64]bool{}
	for _, set := range pointAttrs(r.collect()[telemetry.MetricHubUtilization]) {
		if i, ok := set.Value(telemetry.AttrHubIndex); ok {
			indexes[i.AsInt64()] = true
		}
	}
	if len(indexes) != 2 || !indexes[0] || !indexes[2] {
		t.Errorf("utilization series for hub indexes %v, want 0 and 2", indexes)
	}
}
