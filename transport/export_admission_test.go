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
