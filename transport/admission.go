package transport

import (
	"fmt"
	"math"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hubio/hubio/poller"
)

// AdmissionPolicy says which conns a Listener takes; NewAdmission turns it
// into an Admission that listeners share. The zero value takes every conn:
// each limit is off while its field is zero, and turning one on changes
// nothing else.
//
// A refused conn is accepted and closed at once with a reset (SO_LINGER 0):
// the client fails within a round trip instead of waiting in the backlog,
// and the server keeps no TIME_WAIT entry per refusal. A paused listener
// stops accepting: conns wait in the kernel's backlog, as they would behind
// a server that is slow to accept, and are taken when it resumes.
type AdmissionPolicy struct {
	// MaxConns caps the admitted conns open at once, across every
	// listener sharing the Admission; the surplus is refused (reason
	// "conns").
	MaxConns int
	// MaxConnsPerPeer caps the admitted conns open at once from one peer:
	// one IPv4 prefix of PeerBitsIPv4 bits, or one IPv6 prefix of
	// PeerBitsIPv6 bits (an IPv4-mapped IPv6 address counts as IPv4). The
	// surplus is refused (reason "peer"). Unix-socket peers have no
	// address and are not limited per peer.
	MaxConnsPerPeer int
	// PeerBitsIPv4 and PeerBitsIPv6 are the prefix lengths that make one
	// peer for MaxConnsPerPeer: 0 means 32 (one address) and 64 (one
	// subnet, what one host is usually given).
	PeerBitsIPv4, PeerBitsIPv6 int
	// Allow lists peers that no limit applies to (health checkers, local
	// traffic): their conns are neither counted nor refused and take no
	// token from the rate. A pause holds them all the same: a paused
	// listener accepts nothing, so it cannot tell who waits in the backlog.
	Allow []netip.Prefix
	// Rate paces new conns: at most Rate per second on average, with
	// bursts of up to Burst (≤ 0 means 1), a token bucket whose waits run
	// on the hub's timers. Over the rate the listener pauses (conns wait in
	// the backlog) until the next token, or, with RefuseOverRate, refuses
	// them (reason "rate"). Zero turns pacing off.
	Rate           float64
	Burst          int
	RefuseOverRate bool
	// MaxLoopDelay sheds load: while the loop delay of a watched hub (the
	// listener's, and any given to Watch) is at or above it, the listener
	// pauses (reason "loop_delay"), so the conns it already serves keep
	// their latency. It resumes once the delay of every watched hub has
	// stayed below ResumeLoopDelay (0 means MaxLoopDelay/2) for
	// ResumeProbes probes in a row. The delay is the hub's own measurement
	// (poller.Hub.LoopDelay), refreshed by a probe timer armed every
	// ProbeInterval (0 means 10 ms) on each watched hub. Zero turns
	// shedding off.
	MaxLoopDelay    time.Duration
	ResumeLoopDelay time.Duration
	ProbeInterval   time.Duration
}

// ResumeProbes is how many probes in a row must see the loop delay below
// AdmissionPolicy.ResumeLoopDelay before a shedding listener resumes: with
// the lower resume threshold, the hysteresis that keeps a listener from
// flapping at the edge of its threshold.
const ResumeProbes = 3

// defaultProbeInterval is AdmissionPolicy.ProbeInterval's default, the
// resolution of Node's monitorEventLoopDelay.
const defaultProbeInterval = 10 * time.Millisecond

// Reason is why a conn was refused or a listener paused.
type Reason int

// The reasons, in the order AdmissionStats lists them.
const (
	// ReasonConns: AdmissionPolicy.MaxConns was reached (refusal).
	ReasonConns Reason = iota + 1
	// ReasonPeer: AdmissionPolicy.MaxConnsPerPeer was reached (refusal).
	ReasonPeer
	// ReasonRate: over AdmissionPolicy.Rate (refusal, or pause).
	ReasonRate
	// ReasonLoopDelay: the hub's loop delay reached
	// AdmissionPolicy.MaxLoopDelay (pause).
	ReasonLoopDelay
	numReasons = iota
)

// String returns the reason's name, as the telemetry attribute gives it:
// "conns", "peer", "rate" or "loop_delay".
func (r Reason) String() string {
	switch r {
	case ReasonConns:
		return "conns"
	case ReasonPeer:
		return "peer"
	case ReasonRate:
		return "rate"
	case ReasonLoopDelay:
		return "loop_delay"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// AdmissionStats are an Admission's counters since NewAdmission.
type AdmissionStats struct {
	// Open is the number of admitted conns open now (allowed ones aside).
	Open int64
	// Admitted counts the conns admitted under the limits; Allowed those
	// of allow-listed peers, taken without limits.
	Admitted, Allowed uint64
	// RefusedConns, RefusedPeer and RefusedRate count the refusals by
	// reason.
	RefusedConns, RefusedPeer, RefusedRate uint64
	// PausedRate and PausedLoopDelay are the time listeners have spent
	// paused by reason, the pause under way included (listeners sharing
	// the Admission pause together and count once).
	PausedRate, PausedLoopDelay time.Duration
	// Shedding reports whether a loop-delay pause is under way.
	Shedding bool
}

// Refused returns the refusals counted for reason r.
func (s AdmissionStats) Refused(r Reason) uint64 {
	switch r {
	case ReasonConns:
		return s.RefusedConns
	case ReasonPeer:
		return s.RefusedPeer
	case ReasonRate:
		return s.RefusedRate
	}
	return 0
}

// Paused returns the time paused for reason r.
func (s AdmissionStats) Paused(r Reason) time.Duration {
	switch r {
	case ReasonRate:
		return s.PausedRate
	case ReasonLoopDelay:
		return s.PausedLoopDelay
	}
	return 0
}

// Admission applies an AdmissionPolicy to the conns of the listeners given
// it (Listener.SetAdmission). Its decisions run in Accept, on the goroutine
// that calls it, before a refused conn costs more than accept(2) and
// close(2): no goroutine per decision, and nothing the hub goroutine waits
// for. Its methods are safe for concurrent use.
//
// Admitted conns hold a slot (their share of MaxConns and
// MaxConnsPerPeer) until they close: Close releases it exactly once,
// whichever goroutine closes them, also after NewConn has moved the conn
// to another hub (the slot moves with it) and for a conn dropped unclosed
// (its cleanup releases it).
//
// # State and ownership
//
// mu guards peers, the token bucket (tokens, filled) and the hooks' list
// changes; it is taken by Accept's decisions and by Close's release, for a
// few map and float operations, and never by the hub goroutine. open and
// the counters are atomics, written under mu (open) or anywhere (counters)
// and read by Stats without the lock. shedding and the pause clocks are
// atomics: the probes, on their hubs' goroutines, change them, and Accept
// reads them. listeners is copy-on-write (replaced under mu, loaded
// without it), so a probe that resumes the listeners takes no lock.
type Admission struct {
	pol     AdmissionPolicy
	burst   float64
	resume  time.Duration
	probeIv time.Duration
	// clock is the time, monotonic, in ns; tests replace it before use.
	clock func() int64

	mu     sync.Mutex
	peers  map[netip.Prefix]int // open conns per peer prefix; no zero entries
	tokens float64              // token bucket: tokens left at filled
	filled int64                // clock of the last refill

	open                  atomic.Int64
	admitted, allowed     atomic.Uint64
	refused               [numReasons + 1]atomic.Uint64
	shedding              atomic.Int32 // watched hubs over MaxLoopDelay now
	rateSince, delaySince atomic.Int64 // clock a pause began; 0 when none
	rateTotal, delayTotal atomic.Int64 // ns paused, over ended pauses
	// listeners are the registrations of the listeners to wake when a
	// pause ends; hooks are OnFirst's functions.
	listeners atomic.Pointer[[]*poller.Registration]
	hooks     atomic.Pointer[[]*firstHook]
}

// acceptGateHook, when set (by tests only), runs in a gated Accept between
// its load of the gate and its Prepare (fd_linux.go).
var acceptGateHook atomic.Pointer[func()]

// firstHook is an OnFirst function with its own once-per-reason flags.
type firstHook struct {
	f     func(Reason)
	fired [numReasons + 1]atomic.Bool
}

// NewAdmission checks p and returns an Admission applying it. It fails for
// a negative limit, a prefix length out of its family's range, a
// non-finite or negative rate, or a resume threshold above MaxLoopDelay.
func NewAdmission(p AdmissionPolicy) (*Admission, error) {
	bad := func(format string, args ...any) (*Admission, error) {
		return nil, fmt.Errorf("transport: AdmissionPolicy."+format, args...)
	}
	switch {
	case p.MaxConns < 0:
		return bad("MaxConns %d is negative", p.MaxConns)
	case p.MaxConnsPerPeer < 0:
		return bad("MaxConnsPerPeer %d is negative", p.MaxConnsPerPeer)
	case p.PeerBitsIPv4 < 0 || p.PeerBitsIPv4 > 32:
		return bad("PeerBitsIPv4 %d is out of 0..32", p.PeerBitsIPv4)
	case p.PeerBitsIPv6 < 0 || p.PeerBitsIPv6 > 128:
		return bad("PeerBitsIPv6 %d is out of 0..128", p.PeerBitsIPv6)
	case p.Rate < 0 || math.IsNaN(p.Rate) || math.IsInf(p.Rate, 0):
		return bad("Rate %v is not a finite rate", p.Rate)
	case p.MaxLoopDelay < 0 || p.ResumeLoopDelay < 0 || p.ProbeInterval < 0:
		return bad("MaxLoopDelay, ResumeLoopDelay and ProbeInterval must not be negative")
	case p.MaxLoopDelay > 0 && p.ResumeLoopDelay > p.MaxLoopDelay:
		return bad("ResumeLoopDelay %v is above MaxLoopDelay %v", p.ResumeLoopDelay, p.MaxLoopDelay)
	}
	for _, pf := range p.Allow {
		if !pf.IsValid() {
			return bad("Allow holds an invalid prefix %v", pf)
		}
	}
	if p.PeerBitsIPv4 == 0 {
		p.PeerBitsIPv4 = 32
	}
	if p.PeerBitsIPv6 == 0 {
		p.PeerBitsIPv6 = 64
	}
	p.Allow = append([]netip.Prefix(nil), p.Allow...)
	a := &Admission{
		pol:     p,
		burst:   float64(max(p.Burst, 1)),
		resume:  p.ResumeLoopDelay,
		probeIv: p.ProbeInterval,
		clock:   monotonic,
		peers:   make(map[netip.Prefix]int),
	}
	if a.resume == 0 {
		a.resume = p.MaxLoopDelay / 2
	}
	if a.probeIv == 0 {
		a.probeIv = defaultProbeInterval
	}
	a.tokens = a.burst
	a.filled = a.clock()
	return a, nil
}

// Policy returns the policy a applies, with its defaults filled in.
func (a *Admission) Policy() AdmissionPolicy {
	p := a.pol
	p.Allow = append([]netip.Prefix(nil), p.Allow...)
	if p.MaxLoopDelay > 0 {
		p.ResumeLoopDelay, p.ProbeInterval = a.resume, a.probeIv
	}
	return p
}

// admEpoch anchors monotonic.
var admEpoch = time.Now()

// monotonic is the Admission's default clock: ns since admEpoch, never 0.
func monotonic() int64 { return int64(time.Since(admEpoch)) + 1 }

// Stats returns a snapshot of a's counters.
func (a *Admission) Stats() AdmissionStats {
	now := a.clock()
	running := func(since, total *atomic.Int64) time.Duration {
		d := total.Load()
		if s := since.Load(); s != 0 {
			d += max(now-s, 0)
		}
		return time.Duration(d)
	}
	return AdmissionStats{
		Open:            a.open.Load(),
		Admitted:        a.admitted.Load(),
		Allowed:         a.allowed.Load(),
		RefusedConns:    a.refused[ReasonConns].Load(),
		RefusedPeer:     a.refused[ReasonPeer].Load(),
		RefusedRate:     a.refused[ReasonRate].Load(),
		PausedRate:      running(&a.rateSince, &a.rateTotal),
		PausedLoopDelay: running(&a.delaySince, &a.delayTotal),
		Shedding:        a.shedding.Load() > 0,
	}
}

// OnFirst adds f to the functions told the first time, after this call,
// that a conn is refused or a listener pauses for each reason: once per
// reason for each f (grpcopt logs through it, once per server). f runs on
// the goroutine that decided (Accept's, or a hub's for a loop-delay
// pause) and must return quickly without blocking.
func (a *Admission) OnFirst(f func(Reason)) { a.OnFirstRemovable(f) }

// OnFirstRemovable is OnFirst, and returns a function that removes f again
// (the first call; later ones do nothing). Something that lives shorter
// than the Admission, as a listener of grpcopt's does, removes its hook
// when it ends, so that an Admission shared by listener after listener
// does not keep and call every one's. A call of f already under way when
// remove runs (a decision on another goroutine) may still complete; none
// starts after remove returns.
func (a *Admission) OnFirstRemovable(f func(Reason)) (remove func()) {
	h := &firstHook{f: f}
	a.mu.Lock()
	cowAppend(&a.hooks, h)
	a.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			a.mu.Lock()
			defer a.mu.Unlock()
			cowRemove(&a.hooks, h)
		})
	}
}

// cowAppend replaces the list p points to with a copy ending in x. The
// caller holds a.mu, which orders the writers; readers load p without it.
func cowAppend[T any](p *atomic.Pointer[[]T], x T) {
	var l []T
	if old := p.Load(); old != nil {
		l = append(l, *old...)
	}
	l = append(l, x)
	p.Store(&l)
}

// cowRemove replaces the list p points to with a copy without x, if x is in
// it. The caller holds a.mu.
func cowRemove[T comparable](p *atomic.Pointer[[]T], x T) {
	old := p.Load()
	if old == nil {
		return
	}
	l := make([]T, 0, len(*old))
	for _, y := range *old {
		if y != x {
			l = append(l, y)
		}
	}
	p.Store(&l)
}

// first tells the hooks that have not yet heard of r.
func (a *Admission) first(r Reason) {
	p := a.hooks.Load()
	if p == nil {
		return
	}
	for _, h := range *p {
		if !h.fired[r].Load() && h.fired[r].CompareAndSwap(false, true) {
			h.f(r)
		}
	}
}

// refuse counts a refusal for r.
func (a *Admission) refuse(r Reason) {
	a.refused[r].Add(1)
	a.first(r)
}

// peerOf returns the peer prefix of addr, and whether it is allow-listed.
// An invalid addr (a unix peer) has no prefix.
func (a *Admission) peerOf(addr netip.Addr) (netip.Prefix, bool) {
	if !addr.IsValid() {
		return netip.Prefix{}, false
	}
	addr = addr.Unmap().WithZone("")
	for _, pf := range a.pol.Allow {
		if pf.Contains(addr) {
			return netip.Prefix{}, true
		}
	}
	bits := a.pol.PeerBitsIPv6
	if addr.Is4() {
		bits = a.pol.PeerBitsIPv4
	}
	pf, _ := addr.Prefix(bits)
	return pf, false
}

// admit decides on a conn accepted from peer: it returns the conn's slot
// (nil for an allow-listed peer) and 0, or nil and the reason it is
// refused. Accept's goroutine.
func (a *Admission) admit(peer netip.Addr) (*slot, Reason) {
	key, allowed := a.peerOf(peer)
	if allowed {
		a.allowed.Add(1)
		return nil, 0
	}
	r := a.take(key)
	if r != 0 {
		a.refuse(r)
		return nil, r
	}
	a.admitted.Add(1)
	return &slot{a: a, key: key}, 0
}

// take counts a conn from key against the limits and the rate, all or
// nothing, and returns 0, or the reason it cannot.
func (a *Admission) take(key netip.Prefix) Reason {
	p := &a.pol
	a.mu.Lock()
	defer a.mu.Unlock()
	if p.MaxConns > 0 && a.open.Load() >= int64(p.MaxConns) {
		return ReasonConns
	}
	perPeer := p.MaxConnsPerPeer > 0 && key.IsValid()
	if perPeer && a.peers[key] >= p.MaxConnsPerPeer {
		return ReasonPeer
	}
	if p.Rate > 0 {
		// In pause mode, Accept waited for a token before accepting; a
		// listener sharing the Admission may have taken it since, and the
		// bucket then runs a token into debt rather than refuse a conn
		// already accepted.
		a.refill()
		if p.RefuseOverRate && a.tokens < 1 {
			return ReasonRate
		}
		a.tokens--
	}
	if perPeer {
		a.peers[key]++
	}
	a.open.Add(1)
	return 0
}

// refill adds the tokens earned since the last refill. mu held.
func (a *Admission) refill() {
	now := a.clock()
	if d := now - a.filled; d > 0 {
		a.tokens = min(a.burst, a.tokens+float64(d)*a.pol.Rate/1e9)
	}
	a.filled = now
}

// rateWait returns how long until the bucket holds a token, 0 if it does
// now; always 0 unless pacing pauses.
func (a *Admission) rateWait() time.Duration {
	if a.pol.Rate == 0 || a.pol.RefuseOverRate {
		return 0
	}
	a.mu.Lock()
	a.refill()
	need := 1 - a.tokens
	a.mu.Unlock()
	if need <= 0 {
		return 0
	}
	return time.Duration(math.Ceil(need / a.pol.Rate * 1e9))
}

// release gives back a slot's share. Any goroutine, once per slot.
func (a *Admission) release(key netip.Prefix) {
	a.mu.Lock()
	if a.pol.MaxConnsPerPeer > 0 && key.IsValid() {
		if n := a.peers[key]; n <= 1 {
			delete(a.peers, key)
		} else {
			a.peers[key] = n - 1
		}
	}
	a.open.Add(-1)
	a.mu.Unlock()
}

// pauseBegins and pauseEnds keep a pause clock: the first listener to see
// a pause starts it, the first to see it over stops it.
func (a *Admission) pauseBegins(since *atomic.Int64, r Reason) {
	if since.Load() == 0 && since.CompareAndSwap(0, a.clock()) {
		a.first(r)
	}
}

func (a *Admission) pauseEnds(since, total *atomic.Int64) {
	if s := since.Swap(0); s != 0 {
		total.Add(max(a.clock()-s, 0))
	}
}

// attach adds a listener's registration to those woken when a pause ends.
func (a *Admission) attach(r *poller.Registration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	cowAppend(&a.listeners, r)
}

// detach removes a registration attach added.
func (a *Admission) detach(r *poller.Registration) {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := a.listeners.Load()
	if p == nil {
		return
	}
	regs := make([]*poller.Registration, 0, len(*p))
	for _, x := range *p {
		if x != r {
			regs = append(regs, x)
		}
	}
	a.listeners.Store(&regs)
}

// wakeListeners makes every attached listener's Accept look again.
func (a *Admission) wakeListeners() {
	if p := a.listeners.Load(); p != nil {
		for _, r := range *p {
			r.Wake(poller.Write) // where a paused Accept waits
		}
	}
}

// Watch makes the loop delay of h count for shedding (see
// AdmissionPolicy.MaxLoopDelay), besides the hubs of the listeners the
// Admission is given: for a listener whose conns go to other hubs (a
// poller.Group's). It arms a probe timer on h every ProbeInterval until
// stop is called or h closes. Without MaxLoopDelay it does nothing.
func (a *Admission) Watch(h *poller.Hub) (stop func()) {
	if a.pol.MaxLoopDelay == 0 {
		return func() {}
	}
	p := &probe{a: a, h: h}
	p.arm()
	return p.stop
}

// probe watches one hub's loop delay for an Admission.
//
// Ownership: below is the hub goroutine's (the probe's timer callback runs
// there alone); over is written there too, and is atomic only for stop on
// a hub that has closed, which reads it from another goroutine. stopped is
// set by stop, from any goroutine; cancel holds the armed runtime timer's
// stop function, swapped by arm.
type probe struct {
	a       *Admission
	h       *poller.Hub
	over    atomic.Bool // this hub counts in a.shedding
	below   int         // probes in a row below the resume threshold
	stopped atomic.Bool
	cancel  atomic.Pointer[func() bool]
}

// arm schedules the next look at the hub's loop delay. The period is kept
// by a runtime timer, which at its expiry adds a hub timer due at once
// (due): the hub measures how late it ran that one (Hub.LoopDelay), which
// is the delay shedding is about. A hub timer pending for the whole period
// would make the hub read the clock at every wake-up to see whether it was
// due (docs/telemetry.md, fifth pass, did the same for telemetry's probe).
func (p *probe) arm() {
	t := time.AfterFunc(p.a.probeIv, p.due)
	c := t.Stop
	p.cancel.Store(&c)
	if p.stopped.Load() {
		c() // stop ran between the check in look and the Store
	}
}

// due hands the expired period to the hub. A runtime timer's goroutine. On
// a closed hub AfterFunc never runs look, which ends the chain.
func (p *probe) due() {
	if !p.stopped.Load() {
		p.h.AfterFunc(0, p.look)
	}
}

// look runs on the hub goroutine: it reads the delay the hub measured as
// it ran this very timer, updates the shedding state, and re-arms.
func (p *probe) look() {
	if p.stopped.Load() {
		return
	}
	p.observe(p.h.LoopDelay())
	p.arm()
}

// observe applies one loop-delay measurement, with hysteresis.
func (p *probe) observe(d time.Duration) {
	a := p.a
	switch {
	case !p.over.Load() && d >= a.pol.MaxLoopDelay:
		p.over.Store(true)
		p.below = 0
		if a.shedding.Add(1) == 1 {
			a.pauseBegins(&a.delaySince, ReasonLoopDelay)
		}
	case p.over.Load() && d < a.resume:
		if p.below++; p.below >= ResumeProbes {
			p.leave()
		}
	case p.over.Load():
		p.below = 0
	}
}

// leave takes this hub out of the shedding count, and resumes the
// listeners if it was the last one over. It does nothing for a hub that is
// not over.
func (p *probe) leave() {
	a := p.a
	p.below = 0
	if !p.over.CompareAndSwap(true, false) {
		return
	}
	if a.shedding.Add(-1) == 0 {
		a.pauseEnds(&a.delaySince, &a.delayTotal)
		a.wakeListeners()
	}
}

// stop ends the probe; a hub it held over the threshold no longer holds
// the listeners paused.
func (p *probe) stop() {
	if !p.stopped.CompareAndSwap(false, true) {
		return
	}
	if c := p.cancel.Load(); c != nil {
		(*c)()
	}
	// The hub goroutine owns the probe's state: let it leave there, or
	// here if the hub has stopped (leave's CAS makes it happen once).
	if p.h.Schedule(p.leave) != nil {
		p.leave()
	}
}

// slot is an admitted conn's share of the limits. released makes release
// run once, whichever of Close, a move's leftover and the cleanup of a
// dropped conn gets there first.
type slot struct {
	a        *Admission
	key      netip.Prefix
	released atomic.Bool
}

func (s *slot) release() {
	if s.released.CompareAndSwap(false, true) {
		s.a.release(s.key)
	}
}

// admSlot is a netFD's hold on its slot, if it has one.
//
// Ownership: p is set by adopt before the conn is handed out, and taken
// (swapped to nil) by the first of Close and a move; cleanup is written
// with p by adopt and stopped by whoever takes p.
type admSlot struct {
	p       atomic.Pointer[slot]
	cleanup runtime.Cleanup
}

// adopt gives fd the slot s (nil: none), released if fd is dropped
// unclosed. Before fd is shared.
func (fd *netFD) adopt(s *slot) {
	if s == nil {
		return
	}
	fd.adm.p.Store(s)
	fd.adm.cleanup = runtime.AddCleanup(fd, (*slot).release, s)
}

// takeSlot removes fd's slot and returns it, nil if it has none (or
// another caller took it).
func (fd *netFD) takeSlot() *slot {
	s := fd.adm.p.Swap(nil)
	if s != nil {
		fd.adm.cleanup.Stop()
	}
	return s
}

// releaseSlot gives back fd's slot, if it holds one. Close calls it.
func (fd *netFD) releaseSlot() {
	if s := fd.takeSlot(); s != nil {
		s.release()
	}
}

// listenerGate is one listener's use of an Admission.
//
// Ownership: a, reg and stopProbe are immutable. armed is set by the Accept
// that arms the rate pause's wake-up timer, and cleared by that timer on
// the hub goroutine, so that a paused Accept woken by each arriving conn
// arms one timer, not one per arrival.
type listenerGate struct {
	a         *Admission
	reg       *poller.Registration // the listening socket's
	stopProbe func()
	armed     atomic.Bool
}

// paused reports whether Accept must leave conns in the backlog now. For a
// rate pause it arms a timer on the listener's hub that wakes Accept when
// the next token is due. Accept's goroutine.
func (g *listenerGate) paused() bool {
	a := g.a
	if a.shedding.Load() > 0 {
		return true
	}
	w := a.rateWait()
	if w == 0 {
		a.pauseEnds(&a.rateSince, &a.rateTotal)
		return false
	}
	a.pauseBegins(&a.rateSince, ReasonRate)
	if g.armed.CompareAndSwap(false, true) {
		g.reg.Hub().AfterFunc(w, func() {
			g.armed.Store(false)
			g.reg.Wake(poller.Write)
		})
	}
	return true
}

// detach stops the gate's probe and its wake-ups.
func (g *listenerGate) detach() {
	g.stopProbe()
	g.a.detach(g.reg)
}

// SetAdmission makes l apply a's policy to the conns it accepts from now on;
// nil (the default) admits every conn. An Admission may serve several
// listeners, which then share its limits (a server's listeners, or a
// listening socket wrapped again onto another hub). SetAdmission watches
// l's hub for a's loop-delay shedding until l closes or the Admission is
// replaced. Conns already accepted keep the slots they hold.
func (l *Listener) SetAdmission(a *Admission) {
	reg := l.fd.registration()
	if reg == nil {
		return // no hub sockets on this platform: no listener to admit for
	}
	var g *listenerGate
	if a != nil {
		g = &listenerGate{a: a, reg: reg, stopProbe: a.Watch(reg.Hub())}
		a.attach(reg)
	}
	if old := l.gate.Swap(g); old != nil {
		old.detach()
	}
	reg.Wake(poller.Write) // a paused Accept looks again, under the new policy
}

// Admission returns the Admission SetAdmission gave l, nil if none.
func (l *Listener) Admission() *Admission {
	if g := l.gate.Load(); g != nil {
		return g.a
	}
	return nil
}
