package poller

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

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

// Mode is the direction a waiter waits for.
type Mode int

const (
	// Read waits for readability (data, EOF, a pending connection, an error).
	Read Mode = iota
	// Write waits for writability (buffer space, a finished connect, an error).
	Write
)

// WaitDesign selects how the hub goroutine waits for events.
type WaitDesign int

const (
	// Park (the default) registers the hub's epoll fd with the Go runtime
	// poller, so the hub goroutine parks like any other goroutine and holds
	// no OS thread while idle.
	Park WaitDesign = iota
	// Block makes the hub goroutine block in epoll_wait, holding an OS
	// thread until the runtime hands its P to another thread. It is kept for
	// comparison in benchmarks; it is several times slower to wake.
	Block
)

// String returns the design's name as used in benchmark names.
func (d WaitDesign) String() string {
	if d == Block {
		return "block"
	}
	return "park"
}

// Option configures a Hub.
type Option func(*options)

type options struct {
	design WaitDesign
	batch  int
}

// WithWaitDesign selects how the hub waits (Park by default).
func WithWaitDesign(d WaitDesign) Option { return func(o *options) { o.design = d } }

// WithEventBatch sets how many epoll events one epoll_wait may return
// (128 by default).
func WithEventBatch(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.batch = n
		}
	}
}

// Stats are a hub's counters since New. All are cumulative except
// Registered.
type Stats struct {
	Iterations uint64 // loop iterations: epoll_wait calls by the hub goroutine
	Events     uint64 // readiness events delivered to registered fds
	Signals    uint64 // wakeup signals (Schedule, timer changes, Close)
	Writes     uint64 // signals that wrote to the eventfd (the rest coalesced)
	Callbacks  uint64 // Schedule callbacks run
	Timers     uint64 // timer callbacks run (AfterFunc and deadlines)
	Registered int64  // fds registered now
}

// Hub is an event loop: one goroutine that owns an epoll set, a wakeup
// eventfd, a timer heap and a callback queue. Waiters on registered fds park
// until the hub tells them their fd is ready.
//
// All methods are safe for concurrent use. Callbacks given to Schedule and
// AfterFunc run on the hub goroutine, one at a time; they must not block.
// A callback may call Close: the hub then stops once the callback returns.
type Hub struct {
	// wake makes the hub goroutine's wait return. Signalled by Schedule,
	// by timer changes that move the earliest expiry, and by Close.
	wake *wakeup.Wakeup

	// qmu guards queue and closing's transition; lock order: qmu before
	// nothing (no other hub lock is taken while holding it).
	qmu   sync.Mutex
	queue []func() // FIFO of Schedule callbacks, appended by any goroutine
	spare []func() // hub goroutine only: the drained queue, reused

	tm timers // timer heap, under its own lock tm.mu

	// regMu guards regs and the epoll set's membership: epoll_ctl runs
	// under it, and shutdown takes it before the epoll fd is closed. Taken
	// by Register/Deregister (any goroutine) and by the hub goroutine once
	// per batch of events. Lock order: regMu before tm.mu.
	regMu sync.Mutex
	regs  []*Registration // indexed by fd number; nil where none
	gen   uint32          // last generation handed out; under regMu

	// closing is set once by Close (under qmu); the loop exits when it sees it.
	closing atomic.Bool
	// closeErr is what waiters on this hub get once it is closed.
	closeErr error
	// done is closed by the hub goroutine when it has exited.
	done chan struct{}
	// loopGoid is the hub goroutine's id, stored by run before the loop
	// starts; Close compares it with its caller's so that a callback's Close
	// does not wait for its own goroutine to exit.
	loopGoid atomic.Uint64

	isDefault bool

	p poll // platform poll set; see epoll_linux.go

	// Counters; written by the hub goroutine (registered: any goroutine).
	iterations atomic.Uint64
	events     atomic.Uint64
	callbacks  atomic.Uint64
	timersRun  atomic.Uint64
	registered atomic.Int64

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
		wake:      w,
		closeErr:  ErrClosed,
		done:      make(chan struct{}),
		isDefault: isDefault,
	}
	if err := h.p.init(h, o); err != nil {
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
func (h *Hub) run() {
	h.loopGoid.Store(goid())
	pprof.SetGoroutineLabels(hubLabels)
	h.loop()
}

// hubLabels is the context carrying the hub goroutine's pprof labels.
var hubLabels = pprof.WithLabels(context.Background(), pprof.Labels("hubio", "hub"))

// defaultLoop is the default hub's goroutine: a frame of its own lets leak
// checkers (testutil.VerifyNoLeaks) tell it from other hubs' loops.
func (h *Hub) defaultLoop() { h.run() }

// goid returns the calling goroutine's id, parsed from the first line of its
// stack trace ("goroutine 42 [running]:"); 0 if that cannot be read. Only
// Close uses it, to tell the hub goroutine from the others.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, ok := bytes.CutPrefix(b, []byte("goroutine "))
	if !ok {
		return 0
	}
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return 0
	}
	return id
}

var (
	defaultMu  sync.Mutex
	defaultHub *Hub
)

// Default returns the process-wide hub, creating it on first use. It cannot
// be closed. If it cannot be created (no fds left, or an unsupported
// platform), Default returns a hub on which every operation fails with that
// error, and tries again on the next call.
func Default() *Hub {
	defaultMu.Lock()
	defer defaultMu.Unlock()
	if defaultHub != nil {
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
	h := &Hub{closeErr: err, done: make(chan struct{}), isDefault: true}
	h.closing.Store(true)
	close(h.done)
	return h
}

// Err returns nil while the hub runs, and the error its operations return
// once it is closed (or could not be created).
func (h *Hub) Err() error {
	if h.closing.Load() {
		return h.closeErr
	}
	return nil
}

// Close stops the hub: every waiter on a registered fd returns an error
// matching net.ErrClosed, callbacks already scheduled run, pending timers
// are dropped, the hub's own fds are closed, and its goroutine exits before
// Close returns. Called from a callback (on the hub goroutine), Close
// returns at once and the hub stops as soon as the callback returns. A
// second Close returns an error; closing Default is refused.
func (h *Hub) Close() error {
	if h.isDefault {
		return ErrDefaultHub
	}
	h.qmu.Lock()
	if h.closing.Load() {
		h.qmu.Unlock()
		return errClosedTwice
	}
	h.closing.Store(true)
	h.qmu.Unlock()
	h.wake.Signal()
	if id := h.loopGoid.Load(); id != 0 && id == goid() {
		return nil // a callback: the loop stops when it returns
	}
	<-h.done
	return nil
}

// Stats returns a snapshot of the hub's counters.
func (h *Hub) Stats() Stats {
	s := Stats{
		Iterations: h.iterations.Load(),
		Events:     h.events.Load(),
		Callbacks:  h.callbacks.Load(),
		Timers:     h.timersRun.Load(),
		Registered: h.registered.Load(),
	}
	if h.wake != nil {
		ws := h.wake.Stats()
		s.Signals, s.Writes = ws.Signals, ws.Writes
	}
	return s
}

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
	for i, f := range q {
		q[i] = nil
		f()
	}
	h.callbacks.Add(uint64(len(q)))
	h.spare = q[:0]
}

// AfterFunc runs f on the hub goroutine once d has passed (never earlier).
// stop cancels it and reports whether it was still pending. On a closed hub
// f never runs.
func (h *Hub) AfterFunc(d time.Duration, f func()) (stop func() bool) {
	t := &timer{f: f, idx: -1}
	h.setTimer(t, after(d))
	return func() bool { return h.stopTimer(t) }
}

// setTimer (re)schedules t at w, waking the hub if t became the earliest.
func (h *Hub) setTimer(t *timer, w int64) {
	h.tm.mu.Lock()
	if h.closing.Load() {
		// It would never run. Checked under tm.mu: shutdown empties the
		// heap under it after closing is set, so no timer outlives it.
		h.tm.mu.Unlock()
		return
	}
	earliest := h.tm.add(t, w)
	h.tm.mu.Unlock()
	if earliest {
		h.wake.Signal()
	}
}

// stopTimer unschedules t and reports whether it was pending.
func (h *Hub) stopTimer(t *timer) bool {
	h.tm.mu.Lock()
	ok := h.tm.remove(t)
	h.tm.mu.Unlock()
	return ok
}

// runTimers runs the timers that are due and returns the hub-clock time of
// the next one (0 if none). Hub goroutine only. fs is scratch space.
func (h *Hub) runTimers(fs []func()) ([]func(), int64) {
	if h.tm.n.Load() == 0 {
		return fs[:0], 0
	}
	h.tm.mu.Lock()
	n := now()
	late := h.tm.late(n)
	fs, next := h.tm.popExpired(n, fs[:0])
	h.tm.mu.Unlock()
	h.obs.loopDelay(late)
	ran := 0
	for i, f := range fs {
		if h.closing.Load() {
			// A timer before this one (or another goroutine) closed the
			// hub: the rest are pending timers, and Close drops those.
			clear(fs[i:])
			break
		}
		fs[i] = nil
		f()
		ran++
	}
	if ran > 0 {
		h.timersRun.Add(uint64(ran))
	}
	return fs[:0], next
}

// nextTimer returns the hub-clock time of the earliest timer, 0 if none.
func (h *Hub) nextTimer() int64 {
	if h.tm.n.Load() == 0 {
		return 0
	}
	h.tm.mu.Lock()
	defer h.tm.mu.Unlock()
	if len(h.tm.heap) == 0 {
		return 0
	}
	return h.tm.heap[0].when
}

// shutdown runs on the hub goroutine after the loop has stopped: it wakes
// every waiter with the hub's close error, runs callbacks scheduled before
// Close, drops timers and closes the hub's fds.
func (h *Hub) shutdown() {
	h.regMu.Lock()
	regs := h.regs
	h.regs = nil
	h.regMu.Unlock()
	for _, r := range regs {
		if r != nil {
			h.registered.Add(-1) // it left regs, as in Deregister
			r.fail(stateHubClosed)
		}
	}
	h.runQueue()
	h.tm.mu.Lock()
	for len(h.tm.heap) > 0 {
		h.tm.remove(h.tm.heap[0])
	}
	h.tm.mu.Unlock()
	h.p.close()
	h.wake.Close()
}

// Registration states; see Registration.state.
const (
	stateOpen      = iota
	stateClosed    // Deregister was called: waiters get net.ErrClosed
	stateHubClosed // the hub closed: waiters get the hub's close error
)

// Registration is an fd registered with a hub, with one waiter slot per
// direction. It is the hub's half of a socket: the owner does its own
// syscalls and calls Wait when they return EAGAIN.
//
// Protocol per direction (as internal/poll's pollDesc): Prepare, then the
// syscall, then on EAGAIN Wait, then loop. A readiness that arrives between
// Prepare and Wait is kept in a one-slot token, so it is never lost; Prepare
// drops tokens from before the syscall. Only one goroutine may wait in a
// direction at a time (the owner serialises its reads and its writes).
type Registration struct {
	hub *Hub
	fd  int
	gen uint32 // generation: stale events carry another value

	// state is stateOpen until Deregister or hub Close changes it, once.
	state atomic.Int32

	dirs [2]direction
}

// direction is one waiter slot of a Registration.
type direction struct {
	// token holds one readiness notification. Sent (non-blocking) by the
	// hub goroutine, deadline timers and Close; received by the waiter.
	token chan struct{}
	// deadline is the hub-clock time at which waits fail, 0 for none.
	// Written under hub.tm.mu; read by the waiter without a lock.
	deadline atomic.Int64
	// timer wakes the waiter at deadline; guarded by hub.tm.mu.
	timer timer
	// probe measures hand-offs for telemetry; see observer.go.
	probe handOffProbe
}

// Register adds fd to the hub's poll set, edge-triggered for reading and
// writing. The fd must be non-blocking and stay open until Deregister
// returns. It returns the hub's close error if the hub is closed.
func (h *Hub) Register(fd int) (*Registration, error) {
	r := &Registration{hub: h, fd: fd}
	for m := range r.dirs {
		d := &r.dirs[m]
		d.token = make(chan struct{}, 1)
		d.timer.idx = -1
		d.timer.f = func() { d.wake() }
	}
	h.regMu.Lock()
	if h.closing.Load() {
		h.regMu.Unlock()
		return nil, h.closeErr
	}
	h.gen++
	if h.gen == 0 { // 0 marks the hub's own fds
		h.gen = 1
	}
	r.gen = h.gen
	if fd >= len(h.regs) {
		n := max(2*len(h.regs), fd+1, 64)
		regs := make([]*Registration, n)
		copy(regs, h.regs)
		h.regs = regs
	}
	// epoll_ctl runs under regMu: shutdown closes the epoll fd only after
	// its own regMu section, so the fd number cannot have been reused.
	if err := h.p.add(fd, r.gen); err != nil {
		h.regMu.Unlock()
		return nil, os.NewSyscallError("epoll_ctl", err)
	}
	h.regs[fd] = r
	h.registered.Add(1)
	h.regMu.Unlock()
	return r, nil
}

// lookup returns the registration an event for (fd, gen) belongs to, or nil
// if that registration is gone (the event is stale). regMu must be held.
func (h *Hub) lookup(fd int32, gen uint32) *Registration {
	if fd < 0 || int(fd) >= len(h.regs) {
		return nil
	}
	r := h.regs[fd]
	if r == nil || r.gen != gen {
		return nil
	}
	return r
}

// Fd returns the registered fd.
func (r *Registration) Fd() int { return r.fd }

// Hub returns the hub the fd is registered with.
func (r *Registration) Hub() *Hub { return r.hub }

// Deregister removes the fd from the hub and wakes its waiters, which
// return net.ErrClosed. The caller closes the fd afterwards. Deregister is
// idempotent.
func (r *Registration) Deregister() {
	if !r.state.CompareAndSwap(stateOpen, stateClosed) {
		return
	}
	h := r.hub
	h.regMu.Lock()
	if r.fd < len(h.regs) && h.regs[r.fd] == r {
		h.regs[r.fd] = nil
		h.p.del(r.fd) // under regMu: the epoll fd is still open
		h.registered.Add(-1)
	}
	h.regMu.Unlock()
	r.wakeAll()
}

// fail marks the registration closed by its hub; hub goroutine only.
func (r *Registration) fail(state int32) {
	r.state.CompareAndSwap(stateOpen, state)
	r.wakeAll()
}

// wakeAll wakes both directions and stops their deadline timers.
func (r *Registration) wakeAll() {
	h := r.hub
	h.tm.mu.Lock()
	for m := range r.dirs {
		h.tm.remove(&r.dirs[m].timer)
	}
	h.tm.mu.Unlock()
	for m := range r.dirs {
		r.dirs[m].wake()
	}
}

// wake leaves a token for the waiter; it never blocks.
func (d *direction) wake() {
	select {
	case d.token <- struct{}{}:
	default:
	}
}

// err returns why a wait in direction m must fail now, or nil.
func (r *Registration) err(m Mode) error {
	switch r.state.Load() {
	case stateClosed:
		return net.ErrClosed
	case stateHubClosed:
		return r.hub.closeErr
	}
	if dl := r.dirs[m].deadline.Load(); dl != 0 && dl <= now() {
		return os.ErrDeadlineExceeded
	}
	return nil
}

// Prepare readies direction m for a syscall: it drops a stale readiness
// token and reports an error if waiting could not succeed (closed, or the
// deadline has passed). Call it before the syscall whose EAGAIN leads to
// Wait.
func (r *Registration) Prepare(m Mode) error {
	d := &r.dirs[m]
	if len(d.token) > 0 {
		select {
		case <-d.token:
		default:
		}
	}
	return r.err(m)
}

// Wait parks until direction m may be ready, the deadline passes or the
// registration or hub closes. It returns nil when the caller should retry
// its syscall (a wake may be spurious), os.ErrDeadlineExceeded, net.ErrClosed
// after Deregister, or the hub's close error.
func (r *Registration) Wait(m Mode) error {
	if err := r.err(m); err != nil {
		return err
	}
	r.hub.obs.receive(&r.dirs[m]) // <-r.dirs[m].token, measured
	return r.err(m)
}

// SetDeadline sets the time after which Prepare and Wait in direction m fail
// with os.ErrDeadlineExceeded; the zero time means none. It takes effect
// immediately, also for a Wait already parked.
func (r *Registration) SetDeadline(m Mode, t time.Time) {
	h, d := r.hub, &r.dirs[m]
	if t.IsZero() {
		h.tm.mu.Lock()
		d.deadline.Store(0)
		h.tm.remove(&d.timer)
		h.tm.mu.Unlock()
		return
	}
	w := when(t)
	if w <= now() {
		h.tm.mu.Lock()
		d.deadline.Store(max(w, 1))
		h.tm.remove(&d.timer)
		h.tm.mu.Unlock()
		d.wake()
		return
	}
	h.tm.mu.Lock()
	d.deadline.Store(w)
	earliest := r.state.Load() == stateOpen && h.tm.add(&d.timer, w)
	h.tm.mu.Unlock()
	if earliest {
		h.wake.Signal()
	}
}
