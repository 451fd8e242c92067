package poller

import "sync/atomic"

// A socket reports EPOLLERR both for a pending socket error (SO_ERROR) and
// for anything waiting on its error queue, such as the transmit timestamps
// that SO_TIMESTAMPING queues there. Without a handler, EPOLLERR wakes both
// directions, so that the waiters' next syscall meets the error. A
// registration whose owner reads the error queue sets a handler: EPOLLERR
// then runs the handler first, and wakes both directions only if it says a
// socket error may be pending. The other bits of the event (EPOLLIN,
// EPOLLOUT, EPOLLHUP) wake their directions as always, so a waiter is
// never woken for a timestamp alone, and never misses an error or a hang-up.

// errQueueHandler is what SetErrQueueHandler stores.
type errQueueHandler struct{ f func() bool }

// errQueue is the handler slot of a Registration (its field errq):
// stored by the owner, loaded by the hub goroutine.
type errQueue struct {
	h atomic.Pointer[errQueueHandler]
}

// SetErrQueueHandler makes f run on the hub goroutine whenever the fd
// reports EPOLLERR, before any waiter is woken; nil removes it. f must not
// block (read the error queue with MSG_DONTWAIT) and must not call Register
// or Deregister. The fd may be closed concurrently: f must guard the fd
// number itself (transport holds a reference on it). f returns true when
// the error queue was all there was: then EPOLLERR wakes nobody; false
// means a socket error may be pending, and both directions are woken.
func (r *Registration) SetErrQueueHandler(f func() bool) {
	if f == nil {
		r.errq.h.Store(nil)
		return
	}
	r.errq.h.Store(&errQueueHandler{f})
}

// readiness returns the directions ev makes ready, and notes an
// exceptional condition (see Registration.Exceptional) before any waiter
// is woken for it. Hub goroutine only.
func (r *Registration) readiness(ev pollEvent) (read, write bool) {
	read, write = ev.read, ev.write
	exceptional := ev.exceptional
	if ev.err {
		if h := r.errq.h.Load(); h == nil || !h.f() {
			// A socket error may be pending: both directions' next
			// syscalls meet it.
			read, write, exceptional = true, true, true
		}
	}
	if exceptional && !r.exceptional.Load() {
		r.exceptional.Store(true)
	}
	return read, write
}
