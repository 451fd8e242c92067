package poller

// DispatchForTest delivers a synthetic epoll event for (fd, gen) on the hub
// goroutine, as if epoll_wait had returned it, and waits until it has.
func (h *Hub) DispatchForTest(fd int, gen uint32, events uint32) error {
	done := make(chan struct{})
	if err := h.Schedule(func() {
		h.dispatchForTest(int32(fd), gen, events)
		close(done)
	}); err != nil {
		return err
	}
	<-done
	return nil
}

// Gen returns the registration's generation.
func (r *Registration) Gen() uint32 { return r.gen }

// Pending reports whether direction m holds a readiness token.
func (r *Registration) Pending(m Mode) bool { return len(r.dirs[m].token) > 0 }

// DoneForTest is closed when the hub goroutine has exited.
func (h *Hub) DoneForTest() <-chan struct{} { return h.done }

// Goid is the goroutine id Close compares with the hub goroutine's.
var Goid = goid
