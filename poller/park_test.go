//go:build linux

package poller_test

import (
	"bytes"
	"runtime"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

// The hand-off word (park.go): a wake that races a Wait, before the waiter
// publishes stWait, between stWait and the park's commit, or after it has
// parked, must end exactly that Wait or leave a readiness that the next one
// takes. A lost wake hangs the waiter, which the bound below reports.
func TestWakeRacingWaitIsNeverLost(t *testing.T) {
	if runtime.GOMAXPROCS(0) < 2 {
		t.Skip("needs two Ps: the waker must run while the waiter parks")
	}
	const rounds = 20000
	h := hubtest.NewHub(t)
	r, _ := pipe(t) // never written: every readiness here comes from Wake
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	defer reg.Deregister()
	// The waker spins on the count rather than parking on a channel, so it
	// runs on another P while the waiter is inside Wait, and with the
	// varying delay below its next wake lands anywhere along Wait's path:
	// before the waiter publishes stWait, between that and the park's
	// commit (in the runtime build), or after it parked.
	var woken atomic.Int64
	failed := make(chan error, 1)
	go func() {
		for range rounds {
			if err := reg.Wait(poller.Read); err != nil {
				failed <- err
				return
			}
			woken.Add(1)
		}
	}()
	for i := range int64(rounds) {
		// A delay that sweeps each wake along the waiter's path: up to a
		// few thousand loop turns, more than the waiter takes from its
		// last Wait's return to its park, with or without the race
		// detector.
		var sum int64
		for d := range (i * 7919) % 4096 {
			sum += d
		}
		spinSink.Store(sum)
		reg.Wake(poller.Read)
		deadline := time.Now().Add(10 * time.Second)
		for spins := 0; woken.Load() <= i; spins++ {
			select {
			case err := <-failed:
				t.Fatalf("round %d: Wait: %v", i, err)
			default:
			}
			if spins%1024 == 1023 {
				if time.Now().After(deadline) {
					t.Fatalf("round %d: the Wait this Wake should end is still parked after 10s", i)
				}
				runtime.Gosched()
			}
		}
	}
	if reg.Pending(poller.Read) {
		t.Fatal("a readiness was left over: one Wake ended no Wait")
	}
}

// spinSink keeps TestWakeRacingWaitIsNeverLost's delay loop from being
// optimised away.
var spinSink atomic.Int64

// A waiter parks the way its build says (poller.ParkDesign), and shows so
// in a goroutine dump, as package net's readers show "IO wait".
func TestParkDesignOfThisBuild(t *testing.T) {
	want := "channel"
	if runtime.GOARCH == "amd64" && !chanparkTag {
		want = "runtime"
	}
	if poller.ParkDesign != want {
		t.Fatalf("ParkDesign = %q on %s, want %q", poller.ParkDesign, runtime.GOARCH, want)
	}
	state := map[string]string{"runtime": "[IO wait", "channel": "[chan receive"}[want]
	h := hubtest.NewHub(t)
	reg, got := parkedReader(t, h)
	ok := hubtest.WaitFor(5*time.Second, func() bool {
		buf := make([]byte, 1<<20)
		buf = buf[:runtime.Stack(buf, true)]
		for _, g := range bytes.Split(buf, []byte("\n\n")) {
			if bytes.Contains(g, []byte(state)) && bytes.Contains(g, []byte("poller.(*Registration).Wait(")) {
				return true
			}
		}
		return false
	})
	if !ok {
		t.Fatalf("no goroutine parked in Wait as %s]", state)
	}
	reg.Deregister()
	if err := within(t, 5*time.Second, got, "the parked Wait"); err == nil {
		t.Fatal("Wait returned nil after Deregister")
	}
}
