package poller

import (
	"net"
	"os"
	"sync/atomic"
	"time"

	"golang.org/x/sys/cpu"
)

// Mode is the direction a waiter waits for.
type Mode int

const (
	// Read waits for readability (data, EOF, a pending connection, an error).
	Read Mode = iota
	// Write waits for writability (buffer space, a finished connect, an error).
	Write
)

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
// Prepare and Wait is never lost: the hub leaves it in the direction
// (direction.state) and Wait returns at once when it finds one; Prepare
// drops readiness from before the syscall. Only one goroutine may
// wait in a direction at a time (the owner serialises its reads and its
// writes).
//
// A Registration holds no reference to its owner (see Register).
type Registration struct {
	hub *Hub   // immutable
	fd  int    // immutable
	gen uint32 // immutable after Register: stale events carry another value
	// listener is immutable: registered by RegisterListener, so not
	// counted in Stats.Conns.
	listener bool

	// state is stateOpen until Deregister or the hub's shutdown changes it,
	// once (CAS).
	state atomic.Int32
	// exceptional is stored by the hub goroutine (readiness), once,
	// before it wakes the waiters for the event that set it; any
	// goroutine loads it (Exceptional). It sits beside state, which every
	// Prepare and Wait reads, so that a reader checking it after a short
	// read touches no other cache line (at the struct's end its load
	// showed as 0.5% of a hub server's profile at 1,000 conns; the move
	// measured no change in CPU per message beyond the noise).
	exceptional atomic.Bool

	dirs [2]direction

	// errq is the EPOLLERR handler; see errqueue.go.
	errq errQueue
}

// Exceptional reports whether the hub has seen the fd report a condition
// under which a read can return more (EOF, an error, the data after an
// urgent mark) with no further event: a hang-up (EPOLLRDHUP, EPOLLHUP),
// urgent data (EPOLLPRI), or an EPOLLERR that is not only the error queue
// (SetErrQueueHandler). Once true it stays true. It is set before the
// event's waiters are woken, so a reader whose Prepare dropped that
// event's readiness still sees it here.
//
// It exists for the short-read rule of edge-triggered epoll (epoll(7)):
// a read(2) on a TCP socket that returns fewer bytes than asked for has
// emptied the receive queue, so the next read can wait for the next event
// (Wait, without Prepare) instead of trying a read that would say EAGAIN
// — unless what ends the queue is a FIN, an error or an urgent mark, which
// no later event reports again. Transport's conns use it that way.
func (r *Registration) Exceptional() bool { return r.exceptional.Load() }

// direction is one waiter slot of a Registration.
//
// Hand-off without a lost wake-up (as internal/poll's pollDesc.rg and wg):
// one word, state, holds the direction's readiness and its waiter. The hub
// (and deadline timers, Deregister, the hub's close, Wake) move it to
// stReady, and ready the waiter if it was parked; the waiter moves it from
// stNone to stWait before it parks, then parks only if nothing moved it
// since (park.go). Every move is an atomic compare-and-swap on the one
// word, so a readiness either finds the waiter's stWait (and wakes it) or
// is there as stReady when the waiter looks (and it does not park). A
// direction nobody waits on costs the hub a load per event once stReady
// is set, and one compare-and-swap when it is not: with edge-triggered
// epoll every read event also reports EPOLLOUT on a writable socket, and
// the writer's next Prepare clears what those left.
type direction struct {
	// The hub and the waiter both write state, per event and per Prepare
	// and Wait: the pads keep it on a cache line of its own, apart from
	// the registration's read-mostly fields and the other direction's
	// state.
	_ cpu.CacheLinePad
	// state is stNone, stReady, stWait or, in the runtime-park build, the
	// parked goroutine (park.go). Any goroutine moves it to stReady; only
	// the direction's owner moves it away from stReady (Prepare, Wait).
	state atomic.Uintptr
	_     cpu.CacheLinePad
	// slot is what the waiter parks on, per build (park_runtime.go,
	// park_chan.go); immutable after Register.
	slot parkSlot
	// deadline is the hub-clock time at which waits fail, 0 for none.
	// Written under hub.tm.mu; read by the waiter without a lock.
	deadline atomic.Int64
	// timer wakes the waiter at deadline; guarded by hub.tm.mu (its f is
	// immutable after Register).
	timer timer
	// probe measures hand-offs for telemetry; see observer.go.
	probe handOffProbe
}

// Register adds fd to the hub's poll set, edge-triggered for reading and
// writing. The fd must be non-blocking and stay open until Deregister
// returns. It returns the hub's close error if the hub is closed.
//
// The hub keeps the Registration (in its table, and its deadline timers in
// the timer heap) until Deregister or Close, and nothing else: the
// Registration points to the hub and its own fields only, never to the
// value that owns it (a conn). An owner dropped without Close therefore
// stays collectable, and a cleanup attached to it (runtime.AddCleanup,
// given the Registration or the fd, not the owner) can Deregister and close
// the fd. Keep it so: a callback or timer that captures the owner makes the
// hub keep it alive.
func (h *Hub) Register(fd int) (*Registration, error) {
	return h.register(fd, false)
}

// RegisterListener is Register for a listening socket: the fd counts in
// Stats.Registered but not in Stats.Conns. Everything else is as Register.
func (h *Hub) RegisterListener(fd int) (*Registration, error) {
	return h.register(fd, true)
}

func (h *Hub) register(fd int, listener bool) (*Registration, error) {
	r := &Registration{hub: h, fd: fd, listener: listener}
	for m := range r.dirs {
		d := &r.dirs[m]
		d.slot.init()
		d.timer.idx = -1
		d.timer.f = d.wake
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
	// add runs under regMu: shutdown closes the poll fd only after its own
	// regMu section, so the fd number cannot have been reused.
	if err := h.p.add(fd, r.gen); err != nil {
		h.regMu.Unlock()
		return nil, err
	}
	h.regs[fd] = r
	h.registered.Add(1)
	if !listener {
		h.conns.Add(1)
	}
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
		h.p.del(r.fd) // under regMu: the poll fd is still open
		h.unregistered(r)
	}
	h.regMu.Unlock()
	r.wakeAll()
}

// unregistered takes r, which has just left the registration table, off
// the counts.
func (h *Hub) unregistered(r *Registration) {
	h.registered.Add(-1)
	if !r.listener {
		h.conns.Add(-1)
	}
}

// closeByHub marks the registration closed by its hub's shutdown and wakes
// its waiters, which then return the hub's close error. Hub goroutine only.
func (r *Registration) closeByHub() {
	r.state.CompareAndSwap(stateOpen, stateHubClosed)
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

// deliver hands a readiness event to the directions it makes ready: the one
// place where the hub tells a waiting goroutine its fd is ready. Hub
// goroutine only.
func (r *Registration) deliver(read, write bool) {
	if dropWakeups && dropThisWakeup() {
		return // hubio_dropwakeup builds only: a deliberately lost wakeup
	}
	r.hub.obs.delivering(r, read, write)
	if read {
		r.dirs[Read].wake()
	}
	if write {
		r.dirs[Write].wake()
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

// Prepare readies direction m for a syscall: it drops a readiness left
// from before (so that the syscall's EAGAIN leads to a real wait) and
// reports an error if waiting could not succeed (closed, or the deadline
// has passed). Call it before the syscall whose EAGAIN leads to Wait.
func (r *Registration) Prepare(m Mode) error {
	d := &r.dirs[m]
	if d.state.Load() == stReady {
		// Only a readiness that lands between the load and the swap is
		// dropped with it (the syscall that follows sees what it
		// reported); a later one stays for Wait, at worst one spurious
		// retry.
		d.state.CompareAndSwap(stReady, stNone)
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
	d := &r.dirs[m]
	if !d.state.CompareAndSwap(stNone, stWait) {
		if d.state.Load() != stReady {
			panic("poller: two goroutines wait in one direction of a registration")
		}
		// Ready since Prepare or the last Wait: take it and retry
		// without parking. (Swap, not Store: the race detector sees
		// what the waker did before it set stReady.)
		d.state.Swap(stNone)
		return r.err(m)
	}
	// state is stWait: a Deregister, deadline or close from now on wakes
	// the park (or stops it from starting), so err is read again after.
	r.hub.obs.receive(d) // d.park(), measured
	d.state.Swap(stNone) // stReady, left by the wake that ended the park
	return r.err(m)
}

// receive parks the waiter, measuring the hand-off when a hub with an
// observer stamps it. Waiter's goroutine.
func (s *observing) receive(d *direction) {
	b := s.on()
	if b == nil || b.every == 0 {
		d.park()
		return
	}
	p := &d.probe
	if p.wokeAt.Load() != 0 {
		p.wokeAt.Store(0) // left by an earlier Wait (see handOffProbe)
	}
	d.park()
	if at := p.wokeAt.Load(); at != 0 {
		p.wokeAt.Store(0)
		b.o.HandOff(time.Duration(now() - at))
	}
}

// Deadline returns the deadline SetDeadline last set for direction m (a
// time in the past once it has passed), or the zero time if none is set.
// Any goroutine; it reads the deadline as the hub keeps it, on the hub's
// monotonic clock, so it may differ from what was set by the rounding of
// that conversion (nanoseconds). It stays readable after Deregister and
// after the hub closes.
func (r *Registration) Deadline(m Mode) time.Time {
	w := r.dirs[m].deadline.Load()
	if w == 0 {
		return time.Time{}
	}
	return time.Now().Add(time.Duration(w - now()))
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
