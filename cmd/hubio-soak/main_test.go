package main

import (
	"bytes"
	"testing"
	"time"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// TestSoak is the short soak run of the test suite: 30 s of churn, faults
// and restarts with nothing lost, corrupted, duplicated or leaked, and
// every fault kind injected at least 10 times.
func TestSoak(t *testing.T) {
	cfg := config{
		Duration: 30 * time.Second, Clients: 8, RPCsPerConn: 20, StreamMsgs: 20,
		Restart: 5 * time.Second, FaultRate: 0.5, Seed: 1,
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
