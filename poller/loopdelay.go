package poller

import "time"

// LoopDelay returns the hub's latest loop-delay measurement: how late the
// earliest due timer ran, at the last pass of the loop that ran timers (the
// value an Observer's LoopDelay receives, measured with or without one).
// It is zero before any timer has run. A hub whose loop is stuck in a long
// callback reports the delay once the callback returns and the next timer
// runs; keep a timer armed (a probe) to have a fresh value at a known
// period. Any goroutine; it reads one atomic.
func (h *Hub) LoopDelay() time.Duration { return time.Duration(h.obs.lastDelay.Load()) }

// Wake leaves a readiness token for direction m, as an event from the poll
// set would: a waiter parked in Wait returns nil and retries its syscall,
// and one that has not parked yet finds the token. It lets the owner of a
// registration make its own waiter look again (a listener resuming after
// a pause, for example). Any goroutine; it never blocks.
func (r *Registration) Wake(m Mode) { r.dirs[m].wake() }
