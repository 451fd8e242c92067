// Package event provides Event, a flag that any goroutine or OS thread can
// set and any number of goroutines can wait on.
//
// It is the cross-thread event of the hub model: a callback running on a hub,
// a goroutine locked to its own OS thread with runtime.LockOSThread (a cgo
// callback, a foreign event loop), or any ordinary goroutine may Set it, and
// waiters wake with no polling and no timeout involved.
package event

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Event is a settable, resettable flag with waiters. The zero value is an
// unset Event ready to use. An Event must not be copied after first use.
//
// Set and IsSet are lock-free on their fast path; Set takes a short internal
// lock only on the unset→set transition, and never blocks on a waiter.
type Event struct {
	// set mirrors "ch is closed". Written only with mu held; read freely.
	set atomic.Bool
	// mu guards ch and the set transitions.
	mu sync.Mutex
	// ch is closed when the Event is set. It is created lazily, so the zero
	// Event works, and replaced by Reset.
	ch chan struct{}
}

// closedChan stands in for ch when Set runs before anyone waited.
var closedChan = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// Set sets the event and wakes every waiter. It is idempotent, safe from any
// goroutine or locked OS thread, and does not allocate.
func (e *Event) Set() {
	if e.set.Load() {
		return
	}
	e.mu.Lock()
	if !e.set.Load() {
		if e.ch == nil {
			e.ch = closedChan
		} else {
			close(e.ch)
		}
		e.set.Store(true)
	}
	e.mu.Unlock()
}

// IsSet reports whether the event is set.
func (e *Event) IsSet() bool { return e.set.Load() }

// Reset clears the event. Waiters that already returned are unaffected;
// Wait calls made after Reset block until the next Set.
func (e *Event) Reset() {
	e.mu.Lock()
	if e.set.Load() {
		e.ch = nil
		e.set.Store(false)
	}
	e.mu.Unlock()
}

// Done returns a channel that is closed when the event is set. After Reset,
// Done returns a new channel.
func (e *Event) Done() <-chan struct{} {
	e.mu.Lock()
	if e.ch == nil {
		e.ch = make(chan struct{})
	}
	ch := e.ch
	e.mu.Unlock()
	return ch
}

// Wait blocks until the event is set or ctx is done. It returns nil once the
// event is set (also when both happened), ctx.Err() otherwise.
func (e *Event) Wait(ctx context.Context) error {
	if e.set.Load() {
		return nil
	}
	select {
	case <-e.Done():
		return nil
	case <-ctx.Done():
		if e.set.Load() {
			return nil
		}
		return ctx.Err()
	}
}

// WaitTimeout blocks until the event is set or d has passed, and reports
// whether it was set. A d ≤ 0 only checks.
func (e *Event) WaitTimeout(d time.Duration) bool {
	if e.set.Load() {
		return true
	}
	if d <= 0 {
		return false
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-e.Done():
		return true
	case <-t.C:
		return e.set.Load()
	}
}

// WaitDeadline blocks until the event is set or the deadline passes, and
// reports whether it was set. A zero deadline waits forever.
func (e *Event) WaitDeadline(deadline time.Time) bool {
	if deadline.IsZero() {
		<-e.Done()
		return true
	}
	return e.WaitTimeout(time.Until(deadline))
}
