package poller

// The states of direction.state, the hand-off word (see direction). Any
// goroutine may move it to stReady; only the direction's owner moves it
// from stNone to stWait (Wait) and back from stReady to stNone (Prepare,
// and Wait once it has taken the readiness). A parked waiter's word holds
// stWait (park_chan.go) or the goroutine itself (park_runtime.go), and
// only a wake moves it on, to stReady.
const (
	stNone  uintptr = iota // nothing to report, nobody waiting
	stReady                // a readiness (event, deadline, close, Wake) not yet taken
	stWait                 // the waiter is parking, or parked on the slot's channel
)

// wake leaves a readiness in d and readies its waiter if one is parked.
// Any goroutine; it never blocks, and a readiness already there absorbs
// it (one slot, as a buffered channel of one).
func (d *direction) wake() {
	for {
		old := d.state.Load()
		if old == stReady {
			return
		}
		if d.state.CompareAndSwap(old, stReady) {
			if old != stNone {
				d.slot.resume(old)
			}
			return
		}
	}
}

// park blocks the waiter, which has just moved d.state from stNone to
// stWait, until a wake moves it to stReady; it returns at once if one
// already has. The caller then takes the readiness (Wait). Waiter's
// goroutine only.
func (d *direction) park() { d.slot.park(&d.state) }

// waiting reports whether d's waiter is in Wait, past the point where a
// wake must ready it (telemetry stamps only such hand-offs). Any goroutine.
func (d *direction) waiting() bool { return d.state.Load() >= stWait }
