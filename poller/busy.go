package poller

import "sync/atomic"

// timedPass is pass that adds the time it took to h.busy: the hub's busy
// time (timers, harvest, dispatch, callbacks), excluding the runtime's
// park and wake around it. Hub goroutine only; used while a test hook has
// set h.busy.
func (h *Hub) timedPass() bool {
	t := now()
	stop := h.pass()
	h.busy.Add(now() - t)
	return stop
}

// measureBusy makes the Park loop count its busy time into a fresh counter
// from the next pass on, and returns it. It runs as a callback, so h.busy
// is written on the hub goroutine, the only one that reads it.
func (h *Hub) measureBusy() (*atomic.Int64, error) {
	c := new(atomic.Int64)
	done := make(chan struct{})
	if err := h.Schedule(func() { h.busy = c; close(done) }); err != nil {
		return nil, err
	}
	<-done
	return c, nil
}
