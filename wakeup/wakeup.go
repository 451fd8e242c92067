// Package wakeup provides the file descriptor that wakes a hub's event loop.
//
// A Wakeup is a readable fd (an eventfd on Linux, the read end of a pipe on
// other unix systems) that a hub registers in its poll set. Any goroutine may
// call Signal to make the fd readable; the hub calls Drain once it has woken.
//
// Signals are coalesced: between two Drains, only the first Signal writes to
// the fd, the rest cost one atomic operation. The protocol that makes this
// safe is:
//
//	Signal: if pending.CompareAndSwap(false, true) { write(fd) }
//	Drain:  read(fd) until EAGAIN; pending.Store(false)
//
// Drain reads before it clears the flag, so a Signal that lands between the
// two finds the flag still set and skips its write; the caller of Drain must
// therefore look for work after Drain returns (the hub does). A Signal that
// happens after Drain returns finds the flag clear and writes, so it always
// produces another readable event: no wakeup is lost.
//
// On platforms without eventfd or pipes (windows), New returns an error
// matching errors.ErrUnsupported.
package wakeup

import (
	"fmt"
	"net"
	"runtime"
	"sync/atomic"
)

// ErrClosed is returned by operations on a closed Wakeup.
// errors.Is(ErrClosed, net.ErrClosed) is true.
var ErrClosed = fmt.Errorf("wakeup: closed: %w", net.ErrClosed)

// Wakeup is a coalescing, cross-goroutine wakeup fd.
//
// Signal may be called from any goroutine (including one locked to its own OS
// thread) and never blocks. Drain and Fd are meant for the one goroutine that
// polls the fd. Close may be called once, by the owner, after the poller has
// stopped using the fd.
type Wakeup struct {
	// pending is true from the Signal that wrote to the fd until the Drain
	// that consumed it. Written by Signal (CAS false→true) and Drain
	// (Store false); read by both.
	pending atomic.Bool
	// users guards the fds against Close: bit 63 (closedBit) is set once by
	// Close; the low bits count Signal calls that are about to write. A
	// Signal that finds closedBit set does not write; Close waits for the
	// count to reach zero before it releases the fds, so a write never lands
	// on a reused fd number.
	users atomic.Uint64

	signals atomic.Uint64 // Signal calls
	writes  atomic.Uint64 // Signal calls that wrote to the fd

	f fds // platform fds; immutable after New
}

// Stats counts Signal calls and the writes they caused; writes ≤ signals,
// and the difference is what coalescing saved.
type Stats struct {
	Signals uint64 // calls to Signal
	Writes  uint64 // write syscalls made by Signal
}

// New creates a Wakeup. Its fds are non-blocking and close-on-exec.
func New() (*Wakeup, error) {
	f, err := newFds()
	if err != nil {
		return nil, err
	}
	return &Wakeup{f: f}, nil
}

// Fd returns the fd to register for readability in a poll set.
func (w *Wakeup) Fd() int { return w.f.readFd() }

// Signal makes Fd readable unless a previous Signal already did and no Drain
// has consumed it since. It is safe from any goroutine, never blocks and does
// not allocate.
func (w *Wakeup) Signal() {
	w.signals.Add(1)
	if w.pending.Load() || !w.pending.CompareAndSwap(false, true) {
		return
	}
	if w.users.Add(1)&closedBit == 0 {
		w.writes.Add(1)
		w.f.write()
	}
	w.users.Add(^uint64(0))
}

const closedBit = 1 << 63

// Drain consumes every pending signal and re-arms Signal. After Drain the
// caller must check for the work that signals announce: a Signal racing with
// Drain may have been absorbed by it.
func (w *Wakeup) Drain() {
	w.f.drain()
	w.pending.Store(false)
}

// Stats returns the number of Signal calls and of writes they made.
func (w *Wakeup) Stats() Stats {
	return Stats{Signals: w.signals.Load(), Writes: w.writes.Load()}
}

// Close releases the fds. A second Close returns ErrClosed. Signal after
// Close does nothing.
func (w *Wakeup) Close() error {
	if w.users.Or(closedBit)&closedBit != 0 {
		return ErrClosed
	}
	// Wait out Signals already past their check; each holds us for one
	// non-blocking write at most.
	for w.users.Load() != closedBit {
		runtime.Gosched()
	}
	return w.f.close()
}
