package main

import (
	"bytes"
	"context"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// TestSoak is the short soak run of the test suite: 30 s of churn, faults
// and restarts with nothing lost, corrupted, duplicated or leaked, no RPC
// failed on a fault-free conn outside a restart, every kind of server run
// with its conns on the hub, and every fault kind injected at least 10
// times. Deadlines are the soak's own (5 s a unary RPC, 10 s a stream),
// far above what a loaded machine takes for an echo.
func TestSoak(t *testing.T) {
	cfg := config{
		Duration: 30 * time.Second, Clients: 8, RPCsPerConn: 20, StreamMsgs: 20,
		Restart: 5 * time.Second, FaultRate: 0.5, Seed: 1, RPCTimeout: 5 * time.Second,
	}
	if testing.Short() {
		cfg.Duration = 10 * time.Second
	}
	var progress bytes.Buffer
	r, err := run(cfg, &progress)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	r.print(&out)
	t.Log("\n" + out.String())
	for _, p := range r.problems() {
		t.Error(p)
	}
	if r.Restarts == 0 {
		t.Error("the server was never restarted")
	}
	if testing.Short() {
		return
	}
	for k, ks := range r.Kinds {
		if ks.Lives == 0 {
			t.Errorf("no server of kind %s ran", kindNames[k])
		}
	}
	c, s := r.ClientFaults, r.ServerFault
	for kind, n := range map[string]uint64{
		"latency":   c.Latency + s.Latency,
		"bandwidth": c.Bandwidth + s.Bandwidth,
		"stall":     c.Stall + s.Stall,
		"reset":     c.Reset + s.Reset,
		"half-open": c.HalfOpen + s.HalfOpen,
	} {
		if n < 10 {
			t.Errorf("%s injected %d times, want at least 10", kind, n)
		}
	}
}

// TestSoakFailsOnAnRPCFailingOnAFaultFreeConn: an RPC failure that no
// fault and no restart explains fails the run, and the report names its
// status code.
func TestSoakFailsOnAnRPCFailingOnAFaultFreeConn(t *testing.T) {
	var calls atomic.Int64
	cfg := config{
		Duration: 3 * time.Second, Clients: 2, RPCsPerConn: 20, StreamMsgs: 5, Seed: 1, RPCTimeout: 5 * time.Second,
		onUnary: func(_ context.Context, in []byte) ([]byte, error) {
			if calls.Add(1) == 50 {
				return nil, status.Error(codes.DataLoss, "injected by the test")
			}
			return in, nil
		},
	}
	r, err := run(cfg, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if r.Unexcused[codes.DataLoss] != 1 {
		t.Errorf("unexcused failures %v, want DataLoss=1", r.Unexcused)
	}
	var found bool
	for _, p := range r.problems() {
		found = found || strings.Contains(p, "DataLoss=1") && strings.Contains(p, "injected by the test")
	}
	if !found {
		t.Errorf("problems %q do not report the DataLoss failure", r.problems())
	}
}

// TestJudge: which failures are excused, and why.
func TestJudge(t *testing.T) {
	t0 := time.Now()
	stopped := &life{kind: kindStd, serving: t0.Add(-time.Minute), stopping: t0.Add(-30 * time.Second), next: t0.Add(-29 * time.Second)}
	live := &life{kind: kindListen, serving: t0.Add(-29 * time.Second)}
	forced := &life{kind: kindWrapped, serving: t0.Add(-time.Minute), stopping: t0.Add(-30 * time.Second), forced: t0.Add(-28 * time.Second), next: t0.Add(-28 * time.Second)}
	addr := func(port int) net.Addr { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port} }
	for _, tc := range []struct {
		name       string
		tag        *connTag // nil: no conn
		chFaulted  bool
		resetDials int // the channel's dials the server reset
		start, end time.Time
		code       codes.Code
		want       string // "faulted", "restart" or "unexcused"
	}{
		{"a faulted conn", &connTag{faulted: true, life: live}, false, 0, t0.Add(-time.Second), t0, codes.DeadlineExceeded, "faulted"},
		{"a fault-free conn of a stopped server", &connTag{life: stopped}, false, 0, t0.Add(-31 * time.Second), t0.Add(-30 * time.Second), codes.Unavailable, "restart"},
		{"a fault-free conn of a stopped server, by its deadline", &connTag{life: stopped}, false, 0, t0.Add(-31 * time.Second), t0.Add(-26 * time.Second), codes.DeadlineExceeded, "unexcused"},
		{"a fault-free conn, in flight until Stop cut GracefulStop short", &connTag{life: forced}, false, 0, t0.Add(-31 * time.Second), t0.Add(-28 * time.Second), codes.Unavailable, "unexcused"},
		{"a fault-free conn, failing at GracefulStop before Stop", &connTag{life: forced}, false, 0, t0.Add(-31 * time.Second), t0.Add(-29 * time.Second), codes.Unavailable, "restart"},
		{"a fault-free conn of a live server", &connTag{life: live}, false, 0, t0.Add(-time.Second), t0, codes.Unavailable, "unexcused"},
		{"no conn, in a restart window", nil, false, 0, t0.Add(-30 * time.Second), t0.Add(-30 * time.Second), codes.Unavailable, "restart"},
		{"no conn, within the grace after it", nil, false, 0, t0.Add(-28 * time.Second), t0.Add(-28 * time.Second), codes.Unavailable, "restart"},
		{"no conn, a deadline after it", nil, false, 0, t0.Add(-29 * time.Second), t0.Add(-24 * time.Second), codes.Unavailable, "restart"},
		{"no conn, by its deadline, in a restart window", nil, false, 0, t0.Add(-31 * time.Second), t0.Add(-26 * time.Second), codes.DeadlineExceeded, "unexcused"},
		{"no conn, outside restarts", nil, false, 0, t0.Add(-10 * time.Second), t0.Add(-5 * time.Second), codes.DeadlineExceeded, "unexcused"},
		{"no conn, on a channel with a faulted conn", nil, true, 0, t0.Add(-10 * time.Second), t0.Add(-5 * time.Second), codes.Unavailable, "faulted"},
		{"no conn, after a dial the server reset", nil, false, 1, t0.Add(-10 * time.Second), t0.Add(-10 * time.Second), codes.Unavailable, "faulted"},
		{"no conn, by its deadline, after a dial the server reset", nil, false, 1, t0.Add(-10 * time.Second), t0.Add(-5 * time.Second), codes.DeadlineExceeded, "unexcused"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &soak{tags: map[string]*connTag{}, lives: []*life{stopped, live}, start: t0.Add(-time.Minute)}
			s.res.Codes, s.res.Unexcused = map[codes.Code]int64{}, map[codes.Code]int64{}
			ch := &channel{resetDials: tc.resetDials}
			if tc.chFaulted {
				ch.tags = []*connTag{{faulted: true}}
			}
			p := &peer.Peer{}
			if tc.tag != nil {
				p.LocalAddr = addr(1000)
				s.tags[p.LocalAddr.String()] = tc.tag
			}
			s.judge(ch, p, tc.start, tc.end, status.Error(tc.code, "x"))
			got := map[string]int64{"faulted": s.res.ExcusedFaulted, "restart": s.res.ExcusedRestart, "unexcused": s.res.Unexcused[tc.code]}
			if got[tc.want] != 1 {
				t.Errorf("judged %v, want %s", got, tc.want)
			}
		})
	}
}
