package transport

import "sync/atomic"

// fdRefs is the reference count that guards an fd number against reuse, in
// the manner of internal/poll's fdMutex, without its reader/writer queues
// (netFD serialises reads and writes with two mutexes of its own).
//
// Layout of v:
//
//	bit 63     closed: set once by markClosed; no incref succeeds after it
//	bits 0–62  references: operations in flight, plus one held by Close
//
// Protocol: every operation that uses the fd number calls incref first and
// decref when done, except those that hold rmu or wmu instead (netFD);
// Close calls markClosed, wakes waiters, waits out both locks, then decref. The
// decref that leaves v == closedBit (closed, no references) is the last
// user and the only one allowed to close(2) the fd.
type fdRefs struct{ v atomic.Uint64 }

const closedBit = 1 << 63

// incref adds a reference unless the fd is closed.
func (r *fdRefs) incref() bool {
	for {
		old := r.v.Load()
		if old&closedBit != 0 {
			return false
		}
		if r.v.CompareAndSwap(old, old+1) {
			return true
		}
	}
}

// markClosed sets the closed bit and adds Close's own reference. It reports
// false if the fd was already closed.
func (r *fdRefs) markClosed() bool {
	for {
		old := r.v.Load()
		if old&closedBit != 0 {
			return false
		}
		if r.v.CompareAndSwap(old, (old|closedBit)+1) {
			return true
		}
	}
}

// closed reports whether markClosed has run.
func (r *fdRefs) closed() bool { return r.v.Load()&closedBit != 0 }

// decref drops a reference and reports whether the caller was the last user
// of a closed fd, and so must close it.
func (r *fdRefs) decref() bool { return r.v.Add(^uint64(0)) == closedBit }
