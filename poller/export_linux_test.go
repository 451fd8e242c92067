package poller

// BreakWaitForTest makes every later epoll_wait of h fail with EINVAL (it
// empties the event buffer the kernel is handed), as a persistent error
// would, and wakes the hub so that it waits again at once. It runs on the
// hub goroutine, which owns the buffer, and returns once it has.
func (h *Hub) BreakWaitForTest() error {
	done := make(chan struct{})
	if err := h.Schedule(func() {
		h.p.events = h.p.events[:0]
		h.Schedule(func() {}) // a wake for the park design's next pass
		close(done)
	}); err != nil {
		return err
	}
	<-done
	return nil
}

// FdsForTest returns the hub's own fds: its epoll fd and its wakeup fd.
func (h *Hub) FdsForTest() (epfd, wakeFd int) { return h.p.epfd, h.wake.Fd() }
