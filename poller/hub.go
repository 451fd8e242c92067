package poller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/pprof"
	"sync"
	"sync/atomic"

	"github.com/hubio/hubio/event"
	"github.com/hubio/hubio/wakeup"
)

// ErrClosed is returned by waits and calls on a hub that has been closed.
// errors.Is(ErrClosed, net.ErrClosed) is true.
var ErrClosed = fmt.Errorf("poller: hub closed: %w", net.ErrClosed)

// ErrDefaultHub is returned by Close on the hub returned by Default, which
// lives as long as the process.
var ErrDefaultHub = errors.New("poller: the default hub cannot be closed")

// errClosedTwice is returned by a second Close.
var errClosedTwice = fmt.Errorf("poller: hub already closed: %w", net.ErrClosed)

// errGoexit is the close error of a hub whose goroutine was ended by a
// callback calling runtime.Goexit (t.FailNow in an AfterFunc, for example).
var errGoexit = fmt.Errorf("poller: hub stopped: a callback called runtime.Goexit: %w", net.ErrClosed)

// Stats are a hub's counters since New. All are cumulative except
// Registered and Conns.
type Stats struct {
	Iterations uint64 // loop iterations: epoll_wait calls by the hub goroutine
	Events     uint64 // readiness events delivered to registered fds
	Signals    uint64 // wakeup signals (Schedule, timer changes, Close)
	Writes     uint64 // signals that wrote to the eventfd (the rest coalesced)
	Callbacks  uint64 // Schedule callbacks run
	Timers     uint64 // timer callbacks run (AfterFunc and deadlines)
	Registered int64  // fds registered now: conns and listeners
	// Conns is the number of conns registered now: Registered less the
	// listening sockets (those registered with RegisterListener, as
	// package transport registers its listeners). It answers "how many
	// conns does this hub hold": a server whose conns are on the hub shows
	// one per connected client (a client dialing on the same hub adds its
	// own), an idle one 0.
	Conns int64
}

// Hub is an event loop: one goroutine that owns an epoll set, a wakeup
// eventfd, a timer heap and a callback queue. Waiters on registered fds park
// until the hub tells them their fd is ready.
//
// All methods are safe for concurrent use. Callbacks given to Schedule and
// AfterFunc run on the hub goroutine, one at a time; they must not block.
// A callback may call Close: the hub then stops once the callback returns.
//
// A callback that ends its goroutine with runtime.Goexit (t.FailNow in a
// test, for example) stops the hub: waiters, Schedule, Register and Close
// get an error matching net.ErrClosed that says so, timers are dropped and
// the hub's fds are closed. A callback that panics crashes the program, as
// a panic in any goroutine does; the hub does not recover it.
//
// # Locks
//
// qmu, regMu and tm.mu are leaf locks: no code holds one of them while it
// takes another, runs a callback or makes a syscall other than epoll_ctl
// (under regMu). Callbacks may call every method of the hub, so nothing the
// hub goroutine holds may be held across one.
type Hub struct {
	// wake makes the hub goroutine's wait return. Signalled by Schedule,
	// by timer changes that move the earliest expiry, and by Close.
	// Immutable after New; nil only in a hub made by failedHub.
	wake *wakeup.Wakeup

	// qmu guards queue and the closing transition (closeWith).
	qmu   sync.Mutex
	queue []func() // FIFO of Schedule callbacks, appended by any goroutine
	spare []func() // hub goroutine only: the drained queue, reused

	tm timers // timer heap, under its own lock tm.mu

	// regMu guards regs and gen, and the poll set's membership: add and
	// del run under it, and shutdown takes it after closing is set and
	// before the poll fd is closed, so an fd number given to epoll_ctl is
	// always the hub's own.
	regMu sync.Mutex
	regs  []*Registration // indexed by fd number; nil where none
	gen   uint32          // last generation handed out

	// closing is set once, by closeWith under qmu; the loop exits when it
	// sees it, and every entry point refuses work once it is set.
	closing atomic.Bool
	// closeErr is what waiters and calls get once the hub is closed. It is
	// written by closeWith before closing is set and never again, so a
	// reader that has seen closing set may read it without a lock.
	closeErr error
	// closeCalled is set by the first Close, which reports a hub that
	// stopped on its own with the error that stopped it.
	closeCalled atomic.Bool
	// cbThread is the id of the OS thread the hub goroutine is locked to
	// while it runs a user's callbacks (Schedule, AfterFunc), 0 otherwise.
	// Written only by the hub goroutine (see enterCallbacks); read by Close,
	// which must not wait for the hub goroutine from within a callback. A
	// locked thread runs no other goroutine, so a caller on that thread is
	// the callback itself: no goroutine identity is needed.
	cbThread atomic.Int64
	// done is set when the hub goroutine has stopped and the hub's fds
	// are closed (by shutdown, or at construction for a failedHub).
	done event.Event

	// isDefault and batch are immutable after New.
	isDefault bool
	batch     int // events one wait may harvest
	// groupIndex is the hub's index in the Group that started it, -1 for
	// a hub New started. Written by NewGroup before the group (and so the
	// hub) is handed out; immutable after.
	groupIndex int

	p poll // platform poll set; see loop.go for its contract

	// Hub goroutine only: scratch space and loop state (loop.go).
	ready []*Registration // registrations of one batch of events
	due   []*timer        // timers of one pass
	armed int64           // park: hub-clock deadline set on the poll file, 0 if none

	// Counters; written by the hub goroutine (registered: any goroutine).
	iterations atomic.Uint64
	events     atomic.Uint64
	callbacks  atomic.Uint64
	timersRun  atomic.Uint64
	registered atomic.Int64
	conns      atomic.Int64 // registered less listeners; as registered

	obs observing // telemetry hooks; see observer.go
}

// New creates a hub and starts its goroutine. Close it when done.
//
// On platforms other than Linux, New returns an error matching
// errors.ErrUnsupported.
func New(opts ...Option) (*Hub, error) {
	return newHub(false, opts...)
}

func newHub(isDefault bool, opts ...Option) (*Hub, error) {
	o := options{batch: 128}
	for _, opt := range opts {
		opt(&o)
	}
	w, err := wakeup.New()
	if err != nil {
		return nil, err
	}
	h := &Hub{
		wake:       w,
		closeErr:   ErrClosed,
		isDefault:  isDefault,
		batch:      o.batch,
		groupIndex: -1,
		ready:      make([]*Registration, 0, o.batch),
	}
	if err := h.p.init(w.Fd(), o); err != nil {
		w.Close()
		return nil, err
	}
	if isDefault {
		go h.defaultLoop()
	} else {
		go h.run()
	}
	return h, nil
}

// run is the hub goroutine. Its pprof label ("hubio"="hub") lets a CPU
// profile tell the hub's own time from the rest of the program's
// (go tool pprof -tags, or -tagfocus=hubio=hub); goroutines that callbacks
// start inherit it.
//
// loop returns once the hub is closing; shutdown then releases what the hub
// holds. If they do not return, a callback ended the goroutine: by runtime.Goexit, and the hub
// closes with errGoexit and releases what it holds; or by a panic, which is
// re-raised at once with the callback's frames still on the stack, so that
// the program crashes with the trace it would have without the hub.
func (h *Hub) run() {
	pprof.SetGoroutineLabels(hubLabels)
	stopped := false
	defer func() {
		if stopped {
			return
		}
		if r := recover(); r != nil {
			panic(r)
		}
		if h.done.IsSet() {
			return // a callback run by shutdown called Goexit; release ran
		}
		h.closeWith(errGoexit)
		h.cbThread.Store(0) // the locked thread ended with the goroutine
		h.shutdown()
	}()
	h.loop()
	h.shutdown()
	stopped = true
}

// hubLabels is the context carrying the hub goroutine's pprof labels.
var hubLabels = pprof.WithLabels(context.Background(), pprof.Labels("hubio", "hub"))

// defaultLoop is the default hub's goroutine: a frame of its own lets leak
// checkers (testutil.VerifyNoLeaks) tell it from other hubs' loops.
func (h *Hub) defaultLoop() { h.run() }

var (
	defaultMu  sync.Mutex
	defaultHub *Hub // under defaultMu
)

// Default returns the process-wide hub, creating it on first use. It cannot
// be closed. If it cannot be created (no fds left, or an unsupported
// platform), Default returns a hub on which every operation fails with that
// error, and tries again on the next call. If it has stopped on its own (a
// callback called runtime.Goexit, or its poll set failed), the next call
// creates a new one.
func Default() *Hub {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultHub != nil && !defaultHub.closing.Load() {
		return defaultHub
	}
	h, err := newHub(true)
	if err != nil {
		return failedHub(fmt.Errorf("poller: default hub: %w", err))
	}
	defaultHub = h
	return h
}

// failedHub returns a hub that was never started: every call returns err.
func failedHub(err error) *Hub {
	h := &Hub{closeErr: err, isDefault: true, groupIndex: -1}
	h.closing.Store(true)
	h.done.Set()
	return h
}

// GroupIndex returns the hub's index in the Group that started it (its
// pprof label hubio.hub, and the telemetry attribute hubio.hub.index) and
// true, or -1 and false for a hub that New or Default started.
func (h *Hub) GroupIndex() (int, bool) { return h.groupIndex, h.groupIndex >= 0 }

// Err returns nil while the hub runs, and the error its operations return
// once it is closed (or could not be created).
func (h *Hub) Err() error {
	if h.closing.Load() {
		return h.closeErr
	}
	return nil
}

// closeWith marks the hub closing with err as its close error and reports
// whether it did; false means the hub was already closing, with the error
// it had.
func (h *Hub) closeWith(err error) bool {
	h.qmu.Lock()
	defer h.qmu.Unlock()
	if h.closing.Load() {
		return false
	}
	h.closeErr = err
	h.closing.Store(true)
	return true
}

// Close stops the hub: every waiter on a registered fd returns an error
// matching net.ErrClosed, callbacks already scheduled run, pending timers
// are dropped, the hub's own fds are closed, and its goroutine exits before
// Close returns.
//
// Close cannot wait for the hub goroutine from a callback, which runs on
// that goroutine: called from a callback (Schedule, AfterFunc), Close
// returns at once and the hub stops as soon as the callback returns; Done
// reports when it has. Called from any other goroutine, also while a
// callback runs, Close waits.
//
// A second Close returns an error. The first Close of a hub that stopped
// on its own returns the error that stopped it. Closing Default is refused.
func (h *Hub) Close() error {
	if h.isDefault {
		return ErrDefaultHub
	}
	first := !h.closeCalled.Swap(true)
	if !h.closeWith(ErrClosed) {
		if !first {
			return errClosedTwice
		}
		h.waitStopped()
		return h.closeErr
	}
	h.wake.Signal()
	h.waitStopped()
	return nil
}

// waitStopped waits until the hub goroutine has stopped, unless the caller
// is a callback running on it (it would wait for itself): the hub then
// stops when the callback returns.
func (h *Hub) waitStopped() {
	if h.onHubThread() {
		return
	}
	<-h.done.Done()
}

// Done returns a channel that is closed once the hub goroutine has stopped
// and the hub's fds are closed: after Close, or after the hub stopped on its
// own (see Err).
func (h *Hub) Done() <-chan struct{} { return h.done.Done() }

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	s := Stats{
		Iterations: h.iterations.Load(),
		Events:     h.events.Load(),
		Callbacks:  h.callbacks.Load(),
		Timers:     h.timersRun.Load(),
		Registered: h.registered.Load(),
		Conns:      h.conns.Load(),
	}
	if h.wake != nil {
		ws := h.wake.Stats()
		s.Signals, s.Writes = ws.Signals, ws.Writes
	}
	return s
}

// shutdown runs on the hub goroutine once the loop has stopped (or a
// callback ended the goroutine): it wakes every waiter with the hub's close
// error, drops pending timers, runs callbacks scheduled before the hub
// closed, closes the hub's fds and sets done. The release is deferred so
// that it happens even if one of those callbacks ends the goroutine.
func (h *Hub) shutdown() {
	h.regMu.Lock()
	regs := h.regs
	h.regs = nil
	h.regMu.Unlock()
	for _, r := range regs {
		if r != nil {
			h.unregistered(r) // it left regs, as in Deregister
			r.closeByHub()
		}
	}
	h.tm.mu.Lock()
	for len(h.tm.heap) > 0 {
		h.tm.remove(h.tm.heap[0])
	}
	h.tm.mu.Unlock()
	defer h.release()
	h.runQueue()
}

// release closes the hub's fds and reports the hub stopped.
func (h *Hub) release() {
	h.p.close()
	h.wake.Close()
	h.done.Set()
}
