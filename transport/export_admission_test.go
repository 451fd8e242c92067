package transport

import "time"

// SetAdmissionClock makes a use f as its clock (a duration since any fixed
// point, never decreasing) and refills its bucket at f's present: for
// tests of the rate that move time by hand. Call it before a is used.
func SetAdmissionClock(a *Admission, f func() time.Duration) {
	a.clock = func() int64 { return int64(f()) + 1 }
	a.mu.Lock()
	a.filled = a.clock()
	a.tokens = a.burst
	a.mu.Unlock()
}

// SetAcceptGateHook makes every gated Accept call f between its load of
// the admission gate and its Prepare, until the test ends: the window in
// which a SetAdmission's wake is dropped by that Prepare.
func SetAcceptGateHook(t interface{ Cleanup(func()) }, f func()) {
	acceptGateHook.Store(&f)
	t.Cleanup(func() { acceptGateHook.Store(nil) })
}

// ForceShedding makes a shed as if a watched hub's loop were late, with no
// probe to end it: a listener of a's stays paused until its gate changes.
func ForceShedding(a *Admission) { a.shedding.Add(1) }
