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
// Prepare and Wait is never lost: the hub counts it (direction.seq) and Wait
// returns at once when the count moved since Prepare or the last Wait;
// Prepare ignores readiness from before the syscall. Only one goroutine may
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

	dirs [2]direction

	// errq is the EPOLLERR handler; see errqueue.go.
	errq errQueue
}

// direction is one waiter slot of a Registration.
//
// Hand-off without a lost wake-up: the hub bumps seq, then sends a token
// only if waiting is set; the waiter sets waiting, then parks only if seq
// has not moved since seen. Both pairs are sequentially consistent atomics,
// so either the waiter sees the new seq or the hub sees waiting (or both:
// then a stale token is left, and the next Wait returns once, spuriously,
// which Wait's contract allows; Prepare drops it). So a direction nobody
// waits on costs the hub one atomic add per event, not a channel send that
// its owner must drain again before every syscall: with edge-triggered
// epoll every read event also reports EPOLLOUT on a writable socket, which
// used to leave a write token per event.
type direction struct {
	// The hub writes seq on every event, and the waiter writes waiting and
	// seen on every Prepare and Wait: the pads keep seq on a cache line of
	// its own, so that neither side's writes evict the other's line (and
	// the two directions' lines apart).
	_ cpu.CacheLinePad
	// seq counts the readiness events the hub delivered in this direction.
	// Added to by the hub goroutine only (ready); loaded by the waiter.
	seq atomic.Uint32
	_   cpu.CacheLinePad
	// waiting is set by the waiter from just before it checks seq in Wait
	// until it has woken; the hub sends a token only while it is set.
	waiting atomic.Bool
	// seen is the seq the waiter last accounted for (Prepare, Wait). The
	// owner's goroutine only (serialised by the owner's lock).
	seen uint32
	// token holds one wake-up. Sent (non-blocking) by the hub goroutine
	// while waiting is set, and unconditionally by deadline timers,
	// Deregister and the hub's close; received by the waiter. The channel
	// is immutable after Register.
	token chan struct{}
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
		d.token = make(chan struct{}, 1)
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
		r.dirs[Read].ready()
	}
	if write {
		r.dirs[Write].ready()
	}
}

// ready counts a readiness event and wakes the waiter if one is in Wait
// (see direction). Hub goroutine only.
func (d *direction) ready() {
	d.seq.Add(1)
	if d.waiting.Load() {
		d.wake()
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
	d.seen = d.seq.Load()
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
	d := &r.dirs[m]
	d.waiting.Store(true)
	if s := d.seq.Load(); s != d.seen {
		// Ready since Prepare or the last Wait: retry without parking.
		d.waiting.Store(false)
		d.seen = s
		return r.err(m)
	}
	r.hub.obs.receive(d) // <-d.token, measured
	d.waiting.Store(false)
	d.seen = d.seq.Load()
	return r.err(m)
}

// receive parks on d's token, measuring the hand-off when a hub with an
// observer stamps it. Waiter's goroutine.
func (s *observing) receive(d *direction) {
	b := s.on()
	if b == nil || b.every == 0 {
		<-d.token
		return
	}
	p := &d.probe
	if p.wokeAt.Load() != 0 {
		p.wokeAt.Store(0) // left by an earlier Wait (see handOffProbe)
	}
	<-d.token
	if at := p.wokeAt.Load(); at != 0 {
		p.wokeAt.Store(0)
		b.o.HandOff(time.Duration(now() - at))
	}
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
