package poller

import "runtime"

// Schedule queues f to run on the hub goroutine and wakes the hub through
// its eventfd. Callbacks run in the order they were scheduled. Schedule never
// blocks; it returns an error matching net.ErrClosed if the hub is closed.
func (h *Hub) Schedule(f func()) error {
	h.qmu.Lock()
	if h.closing.Load() {
		h.qmu.Unlock()
		return h.closeErr
	}
	if len(h.queue) == 0 {
		h.obs.queued()
	}
	h.queue = append(h.queue, f)
	h.qmu.Unlock()
	h.wake.Signal()
	return nil
}

// runQueue runs the callbacks scheduled so far. Hub goroutine only.
func (h *Hub) runQueue() {
	h.qmu.Lock()
	q := h.queue
	h.queue = h.spare[:0]
	queuedAt := h.obs.takeQueued()
	h.qmu.Unlock()
	h.obs.queueWait(queuedAt)
	if len(q) == 0 {
		h.spare = q
		return
	}
	h.enterCallbacks()
	for i, f := range q {
		q[i] = nil
		f()
	}
	h.leaveCallbacks()
	h.callbacks.Add(uint64(len(q)))
	h.spare = q[:0]
}

// onHubThread reports whether the caller is the hub goroutine running a
// callback. The caller is locked to its thread while it compares: else it
// could read the id of the thread the hub is locked to, be moved onto that
// very thread once the hub has left its callbacks and unlocked it, and
// then read its own id as the same. Locked, the caller holds its thread
// throughout, and the hub cannot be locked to that thread meanwhile unless
// it is the caller.
func (h *Hub) onHubThread() bool {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	t := h.cbThread.Load()
	return t != 0 && t == threadID()
}

// enterCallbacks locks the hub goroutine to its OS thread and records the
// thread's id, so that a Close from a callback can tell it is one (see
// waitStopped); leaveCallbacks undoes it. Hub goroutine only.
func (h *Hub) enterCallbacks() {
	h.obs.ranCallbacks() // a pass with callbacks measures its busy time
	runtime.LockOSThread()
	h.cbThread.Store(threadID())
}

func (h *Hub) leaveCallbacks() {
	h.cbThread.Store(0)
	runtime.UnlockOSThread()
}
