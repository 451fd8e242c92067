package testutil

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

// Faults are the faults a FaultConn applies to every Write from its
// creation on (or from SetFaults on). The zero value injects nothing.
type Faults struct {
	// Latency delays each Write: its bytes are sent to the peer no earlier
	// than Latency after the Write was called, and Write returns once they
	// are sent. Negative means zero.
	Latency time.Duration
	// Bandwidth, if positive, limits what the conn sends to Bandwidth bytes
	// per second: a Write is sent in slices (about 10 ms' worth each), and
	// each slice leaves only when the link would have finished sending it,
	// so N bytes take at least N/Bandwidth seconds.
	Bandwidth int
}

// FaultCounts are the faults a FaultConn (or all the conns of a
// FaultListener or FaultDialer) has injected so far, by kind. All are
// cumulative.
type FaultCounts struct {
	Latency        uint64 // Writes delayed by Faults.Latency
	Bandwidth      uint64 // Writes paced by Faults.Bandwidth
	Stall          uint64 // Stall calls with a positive duration
	Reset          uint64 // conns reset by Reset
	HalfOpen       uint64 // conns made half-open by HalfOpen
	SwallowedBytes uint64 // bytes "written" while half-open and never sent
}

// Fault kinds, indices into counters.
const (
	kindLatency = iota
	kindBandwidth
	kindStall
	kindReset
	kindHalfOpen
	kindSwallowed
	numKinds
)

// counters are FaultCounts being counted; any goroutine adds.
type counters [numKinds]atomic.Uint64

func (cs *counters) snapshot() FaultCounts {
	return FaultCounts{
		Latency:        cs[kindLatency].Load(),
		Bandwidth:      cs[kindBandwidth].Load(),
		Stall:          cs[kindStall].Load(),
		Reset:          cs[kindReset].Load(),
		HalfOpen:       cs[kindHalfOpen].Load(),
		SwallowedBytes: cs[kindSwallowed].Load(),
	}
}

// direction of a wait; also an index into FaultConn.deadline.
type dir int

const (
	dirRead dir = iota
	dirWrite
)

// FaultConn is a net.Conn that injects faults into the conn it wraps: added
// latency and a bandwidth limit on what it sends (Faults), and, when a test
// triggers them, a stall, a reset or a half-open connection. Every delay is
// timed by the hub's timers (poller.Hub.AfterFunc): a Read or Write that
// must wait parks until a hub timer, Close or a deadline releases it.
//
// The faults shape this side only: latency and bandwidth apply to what this
// conn sends. Wrap both ends to shape both directions.
//
// Otherwise a FaultConn keeps net.Conn's contract: it is safe for
// concurrent use (Reads are serialised among themselves, as are Writes, so
// writes keep their order and are never interleaved); a Read or Write
// parked by a fault returns an error matching os.ErrDeadlineExceeded at its
// deadline and net.ErrClosed on Close; errors are *net.OpError values. A
// Write returns n < len(b) only with an error, and the n bytes it reports
// were handed to the wrapped conn, except while half-open, where they are
// swallowed by design.
//
// The triggers Stall, HalfOpen and SetFaults never block, so a hub callback
// (an AfterFunc scheduling a fault) may call them; Reset blocks as Close
// does, until the wrapped conn's operations in flight have left.
//
// The FaultConn owns the wrapped conn: Close closes it. The hub must
// outlive the conn's waits: a wait that starts on a closed hub fails with
// the hub's error (matching net.ErrClosed), and one already parked when the
// hub closes is released only by Close or a deadline change.
type FaultConn struct {
	conn  net.Conn
	hub   *poller.Hub
	group *group // the listener or dialer that made it; nil if none

	// rmu serialises Reads and guards pending and pendingErr: data (and the
	// error after it) that the wrapped conn returned while a stall was in
	// force, handed out once the stall ends.
	rmu        sync.Mutex
	pending    []byte
	pendingErr error

	// wmu serialises Writes (and CloseWrite) and guards linkFree: when the
	// paced link has sent everything written so far.
	wmu      sync.Mutex
	linkFree time.Time

	// mu guards the fault state below. It is never held while blocking,
	// and is taken after rmu or wmu, never before.
	mu         sync.Mutex
	faults     Faults
	stallUntil time.Time    // reads and writes wait until then
	halfOpen   bool         // set once by HalfOpen
	closed     bool         // set once by Close or Reset
	deadline   [2]time.Time // read and write deadlines; zero means none
	// changed is closed (and replaced) whenever the state above changes, so
	// every parked Read and Write re-examines it.
	changed chan struct{}

	counts counters
}

var (
	_ net.Conn                        = (*FaultConn)(nil)
	_ interface{ CloseWrite() error } = (*FaultConn)(nil)
	_ interface{ NetConn() net.Conn } = (*FaultConn)(nil)
)

// NewFaultConn wraps c, injecting f into its Writes from now on, with delays
// timed by hub h (nil means poller.Default()). The FaultConn owns c from
// now on.
func NewFaultConn(h *poller.Hub, c net.Conn, f Faults) *FaultConn {
	return newFaultConn(h, c, f, nil)
}

func newFaultConn(h *poller.Hub, c net.Conn, f Faults, g *group) *FaultConn {
	if h == nil {
		h = poller.Default()
	}
	return &FaultConn{conn: c, hub: h, group: g, faults: f, changed: make(chan struct{})}
}

// NetConn returns the wrapped conn. Reading or writing it directly bypasses
// the faults.
func (c *FaultConn) NetConn() net.Conn { return c.conn }

// SetFaults replaces the latency and bandwidth faults for Writes that start
// from now on; a Write in progress keeps the faults it started with.
func (c *FaultConn) SetFaults(f Faults) {
	c.mu.Lock()
	c.faults = f
	c.mu.Unlock()
}

// Counts returns the faults this conn has injected so far.
func (c *FaultConn) Counts() FaultCounts { return c.counts.snapshot() }

// Stall makes the conn stop for d: Reads and Writes, those parked now
// included, wait until d has passed (a hub timer releases them), then go on
// with nothing lost. Data the wrapped conn delivers during the stall is
// held back until it ends. Deadlines and Close still apply while stalled.
// A Stall that ends before an earlier one does not shorten it.
func (c *FaultConn) Stall(d time.Duration) {
	if d <= 0 {
		return
	}
	until := time.Now().Add(d)
	c.mu.Lock()
	if until.After(c.stallUntil) {
		c.stallUntil = until
	}
	c.broadcastLocked()
	c.mu.Unlock()
	c.count(kindStall, 1)
}

// HalfOpen makes the conn vanish silently, as a host that lost power
// would: from now on Writes report every byte written but send nothing,
// Reads return nothing (what the peer sends is discarded) and block until
// their deadline or Close, and no FIN or RST reaches the peer. The peer's
// kernel still sees its own data acknowledged, so what detects this is an
// application-level timeout or keepalive (gRPC keepalive pings, a read
// deadline), not TCP_USER_TIMEOUT. Close still closes the wrapped conn, so
// the peer sees EOF once this side is closed. HalfOpen cannot be undone.
func (c *FaultConn) HalfOpen() {
	c.mu.Lock()
	first := !c.halfOpen && !c.closed
	if first {
		c.halfOpen = true
		c.broadcastLocked()
	}
	c.mu.Unlock()
	if first {
		c.count(kindHalfOpen, 1)
	}
}

// Reset closes the conn abortively: it sets SO_LINGER to 0 on the socket
// beneath (found through NetConn methods: a *transport.Conn, a
// *grpcopt.Conn, a *net.TCPConn ...) and closes it, so the kernel sends an
// RST and the peer's next Read or Write fails with syscall.ECONNRESET (or
// EPIPE for a Write). Parked Reads and Writes return net.ErrClosed. Reset
// works on TCP only: on a unix socket, or a conn with no SetLinger beneath,
// it returns an error matching errors.ErrUnsupported and leaves the conn
// open. Every error it returns is a *net.OpError with Op "reset", as
// package net reports a socket's errors.
func (c *FaultConn) Reset() error {
	l, ok := find[interface{ SetLinger(sec int) error }](c.conn)
	if !ok || c.conn.LocalAddr() == nil || c.conn.LocalAddr().Network() != "tcp" {
		return c.opErr("reset", fmt.Errorf("testutil: cannot reset a %T: %w", c.conn, errors.ErrUnsupported))
	}
	c.mu.Lock()
	closed := c.closed
	c.mu.Unlock()
	if closed {
		return c.opErr("reset", net.ErrClosed)
	}
	if err := l.SetLinger(0); err != nil {
		return c.opErr("reset", err)
	}
	if err := c.Close(); err != nil {
		return c.opErr("reset", err)
	}
	c.count(kindReset, 1)
	return nil
}

// Read reads from the wrapped conn. It waits first while the conn is
// stalled, and forever (until its deadline or Close) once it is half-open.
func (c *FaultConn) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return c.conn.Read(b)
	}
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if _, err := c.wait(dirRead, time.Time{}); err != nil {
			return 0, c.opErr("read", err)
		}
		if len(c.pending) > 0 {
			n := copy(b, c.pending)
			c.pending = c.pending[n:]
			return n, nil
		}
		if err := c.pendingErr; err != nil {
			c.pendingErr = nil
			return 0, err
		}
		n, err := c.conn.Read(b)
		if n == 0 && isTimeout(err) {
			return 0, err
		}
		// A stall or HalfOpen that began while the wrapped Read was
		// blocked applies to what it returned.
		c.mu.Lock()
		halfOpen, stalled := c.halfOpen, time.Now().Before(c.stallUntil)
		c.mu.Unlock()
		switch {
		case halfOpen:
			continue // a vanished host hears nothing
		case stalled:
			c.pending = append(c.pending, b[:n]...)
			c.pendingErr = err
			continue
		}
		return n, err
	}
}

// Write writes b to the wrapped conn once the faults allow: after
// Faults.Latency, paced by Faults.Bandwidth, and after any stall. It
// blocks until the last byte has been handed to the wrapped conn, so one
// Write is delivered before the next begins. While half-open it returns
// len(b) at once and sends nothing.
func (c *FaultConn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return c.conn.Write(b)
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	f := c.faults
	c.mu.Unlock()
	lat, rate := max(f.Latency, 0), max(f.Bandwidth, 0)
	if lat > 0 {
		c.count(kindLatency, 1)
	}
	start := time.Now()
	if rate > 0 {
		c.count(kindBandwidth, 1)
		if c.linkFree.After(start) {
			start = c.linkFree
		}
	}
	sent := start // when the link has sent b[:n]
	n := 0
	for n < len(b) {
		k := len(b) - n
		if rate > 0 {
			k = min(k, sliceLen(rate))
			sent = start.Add(transmitTime(n+k, rate))
		}
		halfOpen, err := c.wait(dirWrite, sent.Add(lat))
		if err != nil {
			return n, c.opErr("write", err)
		}
		if halfOpen {
			c.count(kindSwallowed, uint64(len(b)-n))
			return len(b), nil
		}
		m, err := c.conn.Write(b[n : n+k])
		n += m
		if rate > 0 {
			c.linkFree = sent
		}
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// sliceLen is how many bytes a paced Write sends at once: about 10 ms'
// worth at rate bytes per second, at least 1 and at most 256 KiB.
func sliceLen(rate int) int { return min(max(rate/100, 1), 256<<10) }

// transmitTime is how long n bytes take at rate bytes per second, rounded
// up.
func transmitTime(n, rate int) time.Duration {
	return time.Duration((int64(n)*int64(time.Second) + int64(rate) - 1) / int64(rate))
}

// CloseWrite shuts down the sending side of the conn beneath (found
// through NetConn methods), after Faults.Latency and any stall, so the
// peer reads io.EOF after the data written before. While half-open it does
// nothing. It returns an error matching errors.ErrUnsupported if the conn
// beneath has no CloseWrite.
func (c *FaultConn) CloseWrite() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	lat := max(c.faults.Latency, 0)
	c.mu.Unlock()
	halfOpen, err := c.wait(dirWrite, time.Now().Add(lat))
	if err != nil {
		return c.opErr("close", err)
	}
	if halfOpen {
		return nil
	}
	cw, ok := find[interface{ CloseWrite() error }](c.conn)
	if !ok {
		return c.opErr("close", fmt.Errorf("testutil: no CloseWrite on a %T: %w", c.conn, errors.ErrUnsupported))
	}
	return cw.CloseWrite()
}

// Close closes the wrapped conn. Parked Reads and Writes return
// net.ErrClosed; those blocked in the wrapped conn return what its Close
// gives them.
func (c *FaultConn) Close() error {
	c.mu.Lock()
	first := !c.closed
	if first {
		c.closed = true
		c.broadcastLocked()
	}
	c.mu.Unlock()
	if first && c.group != nil {
		c.group.remove(c)
	}
	return c.conn.Close()
}

// LocalAddr returns the wrapped conn's local address.
func (c *FaultConn) LocalAddr() net.Addr { return c.conn.LocalAddr() }

// RemoteAddr returns the wrapped conn's remote address.
func (c *FaultConn) RemoteAddr() net.Addr { return c.conn.RemoteAddr() }

// SetDeadline sets the read and write deadlines, for Reads and Writes
// parked by a fault and for the wrapped conn alike. A deadline moved while
// a call is parked takes effect for that call.
func (c *FaultConn) SetDeadline(t time.Time) error {
	c.setDeadline(t, true, true)
	return c.conn.SetDeadline(t)
}

// SetReadDeadline sets the read deadline (see SetDeadline).
func (c *FaultConn) SetReadDeadline(t time.Time) error {
	c.setDeadline(t, true, false)
	return c.conn.SetReadDeadline(t)
}

// SetWriteDeadline sets the write deadline (see SetDeadline).
func (c *FaultConn) SetWriteDeadline(t time.Time) error {
	c.setDeadline(t, false, true)
	return c.conn.SetWriteDeadline(t)
}

func (c *FaultConn) setDeadline(t time.Time, read, write bool) {
	c.mu.Lock()
	if read {
		c.deadline[dirRead] = t
	}
	if write {
		c.deadline[dirWrite] = t
	}
	c.broadcastLocked()
	c.mu.Unlock()
}

// broadcastLocked wakes every parked wait; c.mu must be held.
func (c *FaultConn) broadcastLocked() {
	close(c.changed)
	c.changed = make(chan struct{})
}

// wait parks the caller until at (zero: now) and any stall have passed. It
// fails with net.ErrClosed once the conn is closed, os.ErrDeadlineExceeded
// once d's deadline has passed, or the hub's error. A half-open conn
// releases writes at once, reporting halfOpen, and reads never.
func (c *FaultConn) wait(d dir, at time.Time) (halfOpen bool, err error) {
	for {
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			return false, net.ErrClosed
		}
		now := time.Now()
		dl := c.deadline[d]
		if !dl.IsZero() && !now.Before(dl) {
			c.mu.Unlock()
			return false, os.ErrDeadlineExceeded
		}
		var wake time.Time // zero: until the state changes
		if c.halfOpen {
			if d == dirWrite {
				c.mu.Unlock()
				return true, nil
			}
		} else {
			wake = at
			if c.stallUntil.After(wake) {
				wake = c.stallUntil
			}
			if !now.Before(wake) {
				c.mu.Unlock()
				return false, nil
			}
		}
		if !dl.IsZero() && (wake.IsZero() || dl.Before(wake)) {
			wake = dl
		}
		changed := c.changed
		c.mu.Unlock()
		if err := c.park(wake.Sub(now), wake.IsZero(), changed); err != nil {
			return false, err
		}
	}
}

// park blocks until d has passed (timed by a hub timer; forever if
// untimed) or changed is closed.
func (c *FaultConn) park(d time.Duration, untimed bool, changed <-chan struct{}) error {
	if untimed {
		<-changed
		return nil
	}
	if err := c.hub.Err(); err != nil {
		return err
	}
	fired := make(chan struct{})
	stop := c.hub.AfterFunc(d, func() { close(fired) })
	select {
	case <-fired:
	case <-changed:
		stop()
	}
	return nil
}

func (c *FaultConn) count(kind int, n uint64) {
	c.counts[kind].Add(n)
	if c.group != nil {
		c.group.counts[kind].Add(n)
	}
}

func (c *FaultConn) opErr(op string, err error) error {
	e := &net.OpError{Op: op, Source: c.conn.LocalAddr(), Addr: c.conn.RemoteAddr(), Err: err}
	if e.Source != nil {
		e.Net = e.Source.Network()
	}
	return e
}

// isTimeout reports whether err is a deadline's.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// find returns the first conn among c and those beneath it (through
// NetConn methods) that is a T.
func find[T any](c net.Conn) (T, bool) {
	for range 16 { // a bound, in case a NetConn returns its receiver
		if t, ok := c.(T); ok {
			return t, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	var zero T
	return zero, false
}

// group is the set of live conns a FaultListener or FaultDialer made, with
// the faults for new conns and the counts of all conns ever made.
type group struct {
	hub *poller.Hub

	mu     sync.Mutex // guards the fields below
	faults Faults
	conns  []*FaultConn // live conns, oldest first
	on     func(*FaultConn)

	counts counters
}

func newGroup(h *poller.Hub, f Faults) *group {
	if h == nil {
		h = poller.Default()
	}
	return &group{hub: h, faults: f}
}

// wrap makes c a FaultConn of the group and runs the callback.
func (g *group) wrap(c net.Conn) *FaultConn {
	g.mu.Lock()
	fc := newFaultConn(g.hub, c, g.faults, g)
	g.conns = append(g.conns, fc)
	on := g.on
	g.mu.Unlock()
	if on != nil {
		on(fc)
	}
	return fc
}

func (g *group) remove(c *FaultConn) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for i, x := range g.conns {
		if x == c {
			g.conns = append(g.conns[:i], g.conns[i+1:]...)
			return
		}
	}
}

func (g *group) live() []*FaultConn {
	g.mu.Lock()
	defer g.mu.Unlock()
	return append([]*FaultConn(nil), g.conns...)
}

func (g *group) setFaults(f Faults) {
	g.mu.Lock()
	g.faults = f
	conns := append([]*FaultConn(nil), g.conns...)
	g.mu.Unlock()
	for _, c := range conns {
		c.SetFaults(f)
	}
}

func (g *group) setCallback(fn func(*FaultConn)) {
	g.mu.Lock()
	g.on = fn
	g.mu.Unlock()
}

// FaultListener is a net.Listener whose accepted conns are FaultConns on
// one hub, so a test can inject faults into a server's conns: give it to
// grpc.Server.Serve, then trigger faults on Conns() or in OnAccept.
//
// Wrap a listener from grpcopt.Listen (whose conns already are hub conns):
// grpcopt.ServerOption finds the hub conn beneath a FaultConn through its
// NetConn method and hands the FaultConn on unchanged, so the faults stay
// in the path. (A FaultConn over a plain package net conn cannot be moved.)
//
// A FaultListener owns the listener it wraps (Close closes it); each
// FaultConn it returns belongs to whoever accepted it. Its methods are safe
// for concurrent use.
type FaultListener struct {
	l net.Listener
	g *group
}

var _ net.Listener = (*FaultListener)(nil)

// NewFaultListener wraps l: every conn it accepts is wrapped in a FaultConn
// with faults f and delays timed by hub h (nil means poller.Default()).
func NewFaultListener(h *poller.Hub, l net.Listener, f Faults) *FaultListener {
	return &FaultListener{l: l, g: newGroup(h, f)}
}

// Accept waits for the next conn and returns it as a *FaultConn, after the
// OnAccept callback has run. Errors are the wrapped listener's.
func (l *FaultListener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.wrap(c), nil
}

// Close closes the wrapped listener; accepted conns stay open.
func (l *FaultListener) Close() error { return l.l.Close() }

// Addr returns the wrapped listener's address.
func (l *FaultListener) Addr() net.Addr { return l.l.Addr() }

// OnAccept sets fn (nil for none) to be called with each conn accepted from
// now on, on the goroutine calling Accept, before Accept returns it. fn must
// not block.
func (l *FaultListener) OnAccept(fn func(*FaultConn)) { l.g.setCallback(fn) }

// Conns returns the accepted conns not yet closed, oldest first.
func (l *FaultListener) Conns() []*FaultConn { return l.g.live() }

// Counts returns the faults injected into every conn this listener has
// accepted, closed ones included.
func (l *FaultListener) Counts() FaultCounts { return l.g.counts.snapshot() }

// SetFaults sets the faults of conns accepted from now on and of every
// live conn (see FaultConn.SetFaults).
func (l *FaultListener) SetFaults(f Faults) { l.g.setFaults(f) }

// FaultDialer dials grpc-go addresses on a hub, as grpcopt.Config.Dial does,
// and wraps each conn in a FaultConn, so a test can inject faults into a
// client's conns. Use DialOption with grpc.NewClient.
//
// Each FaultConn it returns belongs to whoever dialed it (grpc-go closes
// its own). Its methods are safe for concurrent use.
type FaultDialer struct {
	cfg grpcopt.Config
	g   *group
}

// NewFaultDialer returns a dialer whose conns live on hub h (nil means
// poller.Default()), with faults f and delays timed by h.
func NewFaultDialer(h *poller.Hub, f Faults) *FaultDialer {
	return &FaultDialer{cfg: grpcopt.Config{Hub: h}, g: newGroup(h, f)}
}

// Dial connects to addr, in any form grpc-go hands a context dialer (see
// grpcopt.Config.DialOption), and returns a *FaultConn after the OnDial
// callback has run.
func (d *FaultDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.cfg.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return d.g.wrap(c), nil
}

// DialOption returns grpc.WithContextDialer(d.Dial).
func (d *FaultDialer) DialOption() grpc.DialOption { return grpc.WithContextDialer(d.Dial) }

// OnDial sets fn (nil for none) to be called with each conn dialed from now
// on, on the dialing goroutine, before Dial returns it. fn must not block.
func (d *FaultDialer) OnDial(fn func(*FaultConn)) { d.g.setCallback(fn) }

// Conns returns the dialed conns not yet closed, oldest first.
func (d *FaultDialer) Conns() []*FaultConn { return d.g.live() }

// Counts returns the faults injected into every conn this dialer has made,
// closed ones included.
func (d *FaultDialer) Counts() FaultCounts { return d.g.counts.snapshot() }

// SetFaults sets the faults of conns dialed from now on and of every live
// conn (see FaultConn.SetFaults).
func (d *FaultDialer) SetFaults(f Faults) { d.g.setFaults(f) }
