package transport

import (
	"testing"
	"time"
)

// The loop-delay hysteresis, probe by probe: a hub over MaxLoopDelay sheds
// at once; it resumes only after ResumeProbes probes in a row below
// ResumeLoopDelay, and a probe between the two thresholds starts the count
// again.
func TestProbeHysteresis(t *testing.T) {
	a, err := NewAdmission(AdmissionPolicy{MaxLoopDelay: 40 * time.Millisecond, ResumeLoopDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := &probe{a: a}
	ms := time.Millisecond
	steps := []struct {
		delay time.Duration
		shed  bool
	}{
		{39 * ms, false}, // just under the threshold
		{40 * ms, true},  // at it: shed
		{5 * ms, true},   // 1 below resume
		{5 * ms, true},   // 2
		{20 * ms, true},  // between the thresholds: the count starts again
		{5 * ms, true},   // 1
		{9 * ms, true},   // 2
		{1 * ms, false},  // 3 in a row: resume
		{30 * ms, false}, // under the threshold: stay resumed
		{50 * ms, true},  // over again
	}
	for i, s := range steps {
		p.observe(s.delay)
		if got := a.Stats().Shedding; got != s.shed {
			t.Fatalf("probe %d (%v): shedding %v, want %v", i, s.delay, got, s.shed)
		}
	}
	// Two hubs: the listeners stay paused until both are below.
	q := &probe{a: a}
	q.observe(45 * ms)
	for range ResumeProbes {
		p.observe(0)
	}
	if !a.Stats().Shedding {
		t.Fatal("resumed while the other hub is still over")
	}
	for range ResumeProbes {
		q.observe(0)
	}
	if a.Stats().Shedding {
		t.Fatal("still shedding with both hubs below")
	}
}

func TestOnFirstRemovableTakesOnlyItsHookOff(t *testing.T) {
	a, err := NewAdmission(AdmissionPolicy{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	var kept, removed int
	a.OnFirst(func(Reason) { kept++ })
	remove := a.OnFirstRemovable(func(Reason) { removed++ })
	a.first(ReasonConns)
	if kept != 1 || removed != 1 {
		t.Fatalf("before remove: kept hook %d calls, removable %d; want 1 and 1", kept, removed)
	}
	remove()
	remove() // a second call does nothing
	a.first(ReasonPeer)
	if kept != 2 || removed != 1 {
		t.Fatalf("after remove: kept hook %d calls, removed hook %d; want 2 and 1", kept, removed)
	}
	if n := len(*a.hooks.Load()); n != 1 {
		t.Fatalf("%d hooks left, want 1", n)
	}
}
