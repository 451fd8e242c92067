// Package event provides Event, a one-shot signal that any goroutine or OS
// thread can set and any number of goroutines can wait on, with a context
// or a deadline.
//
// Why a package for what a closed channel almost does: a channel may be
// closed once, by one party that knows it is the only one, while an Event
// may be set by any number of parties, any number of times, the first one
// winning; its zero value is ready to use inside another struct; and its
// waits take a context or a deadline. hubio uses it for the hub's own "has
// stopped" signal (poller.Hub.Done), which either Close's path or a hub
// that stops on its own may set. Programs use it where an event loop's
// thread, locked with runtime.LockOSThread, waits for a completion that a
// hub callback sets (see the poller package's examples), as grpc-go's
// grpcsync.Event serves its server.
//
// An Event is never reset: it is set once, for good.
package event

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Event is a one-shot flag with waiters. The zero value is an unset Event
// ready to use. An Event must not be copied after first use.
//
// Set and IsSet are lock-free once the Event is set; Set takes a short
// internal lock only on the unset→set transition, and never blocks on a
// waiter.
type Event struct {
	// set mirrors "ch is closed". Written once, with mu held; read freely.
	set atomic.Bool
	// mu guards ch and the set transition.
	mu sync.Mutex
	// ch is closed when the Event is set. It is created lazily, by the
	// first Done or Set, so the zero Event works, and never replaced.
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

// Done returns a channel that is closed when the event is set; every call
// returns the same channel.
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

// WaitDeadline blocks until the event is set or the deadline passes, and
// reports whether it was set. A zero deadline waits forever; a deadline in
// the past only checks.
func (e *Event) WaitDeadline(deadline time.Time) bool {
	if e.set.Load() {
		return true
	}
	if deadline.IsZero() {
		<-e.Done()
		return true
	}
	d := time.Until(deadline)
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
