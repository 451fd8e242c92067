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
	"google.golang.org/grpc/mem"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// Faults are the faults a FaultConn applies to every Write from its
// creation on (or from SetFaults on). The zero value injects nothing.
type Faults struct {
	// Latency is the link's one-way delay, as tc netem or toxiproxy give
	// it: the bytes of a Write reach the wrapped conn about Latency after
	// they were sent, however the writes are cut, and writes do not add
	// up (N writes in a burst all arrive about Latency after they were
	// sent, not N×Latency). A Write under latency returns once its bytes
	// are queued on the link, as a socket's Write returns once the kernel
	// has them; a later Write reports an error the wrapped conn returned
	// for queued bytes. The link holds at most 4 MiB in flight; a Write
	// beyond that waits (and honours its deadline). Negative means zero.
	Latency time.Duration
	// Bandwidth, if positive, limits what the conn sends to Bandwidth bytes
	// per second: a Write is sent in slices (about 10 ms' worth each), and
	// each slice leaves only when the link would have finished sending it,
	// so N bytes take at least N/Bandwidth seconds. Write returns once its
	// last slice has left; with Latency too, each slice then arrives
	// Latency after it left.
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
// triggers them, a stall, a reset or a half-open connection. A Read or
// Write that must wait is timed by the hub's timers (poller.Hub.AfterFunc):
// it parks until a hub timer, Close or a deadline releases it. Bytes on the
// link under Latency are written to the wrapped conn by a goroutine of the
// conn's own (running only while bytes are in flight, ended by Close or
// Reset), timed by a runtime timer so that they still arrive, or are
// dropped, once the hub is closed.
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
// A *FaultConn has no ReadOnReady (grpc-go's non-pinning read path), so
// that it never claims a path the wrapped conn lacks; FaultListener and
// FaultDialer hand out a wrapper that keeps the path when the wrapped conn
// has it (see FaultConnOf).
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

	// rr is the wrapped conn's ReadOnReady, nil if it has none; set at
	// creation, immutable.
	rr readyReader

	// mu guards the fault state below. It is never held while blocking,
	// and is taken after rmu or wmu, never before.
	mu         sync.Mutex
	faults     Faults
	stallUntil time.Time    // reads and writes wait until then
	halfOpen   bool         // set once by HalfOpen
	closed     bool         // set once by Close or Reset
	deadline   [2]time.Time // read and write deadlines; zero means none
	aborted    bool         // set once by Reset: queued bytes are dropped
	// The link under latency: chunks written and not yet delivered, in
	// order, with their byte total. Writers append (under wmu and mu); the
	// deliverer goroutine, at most one, running while delivering is set,
	// pops and writes them to the wrapped conn. idle is closed when the
	// deliverer exits. sendErr is the wrapped conn's error for a queued
	// chunk, reported by the next Write.
	queue      []chunk
	queued     int
	delivering bool
	idle       chan struct{}
	sendErr    error
	// changed is closed (and replaced) whenever the state above changes, so
	// every parked Read and Write re-examines it.
	changed chan struct{}

	counts counters
}

// chunk is bytes on the link (or a CloseWrite, with done), due at the
// wrapped conn at due.
type chunk struct {
	b    []byte
	due  time.Time
	done chan error // a CloseWrite's result; nil for data
}

// maxQueued is how many bytes the link under latency holds in flight.
const maxQueued = 4 << 20

// readyReader is grpc-go's non-pinning read path (its
// readyreader.Reader), which grpcopt.Conn implements.
type readyReader interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
}

// faultReadyConn is a FaultConn over a conn with ReadOnReady, keeping that
// path (with the faults applied on it) for grpc-go. A FaultConn itself has
// no ReadOnReady, so that a FaultConn over a conn without it does not claim
// it.
type faultReadyConn struct{ *FaultConn }

// ReadOnReady waits for data as Read does (stalls and half-open apply),
// then reads through the wrapped conn's ReadOnReady.
func (c faultReadyConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	return c.readOnReady(bufSize, pool)
}

// NetConn returns the wrapped conn.
func (c faultReadyConn) NetConn() net.Conn { return c.conn }

// FaultConnOf returns the FaultConn behind c, a conn returned by
// FaultListener.Accept or FaultDialer.Dial: a *FaultConn itself, or, when
// the wrapped conn has grpc-go's ReadOnReady read path, a wrapper that keeps
// that path.
func FaultConnOf(c net.Conn) (*FaultConn, bool) {
	switch fc := c.(type) {
	case *FaultConn:
		return fc, true
	case faultReadyConn:
		return fc.FaultConn, true
	}
	return nil, false
}

// netConn returns c as Accept and Dial hand it out: with ReadOnReady when
// the wrapped conn has it.
func (c *FaultConn) netConn() net.Conn {
	if c.rr != nil {
		return faultReadyConn{c}
	}
	return c
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
	rr, _ := c.(readyReader)
	return &FaultConn{conn: c, hub: h, group: g, faults: f, rr: rr, changed: make(chan struct{})}
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
// EPIPE for a Write). Bytes still on the link (under Latency) are dropped.
// Parked Reads and Writes return net.ErrClosed. Reset works on TCP only: on
// a unix socket, or a conn with no SetLinger beneath, it returns an error
// matching errors.ErrUnsupported and leaves the conn open. Every error it
// returns is a *net.OpError with Op "reset", as package net reports a
// socket's errors.
//
// That is what a test reading the peer's raw conn sees. Through gRPC,
// assert the status code, not the message:
// the RPCs in flight on the conn fail with codes.Unavailable, whose message
// says "error reading from server: " and then EOF, "connection reset by
// peer" or, when the client's own conn was reset, "use of closed network
// connection", varying from run to run; the channel then reconnects, so an
// RPC with grpc.WaitForReady(true) succeeds on a new conn (see
// WithServices' example, and TestResetThroughGRPC).
func (c *FaultConn) Reset() error {
	l, ok := transport.Beneath[interface{ SetLinger(sec int) error }](c.conn)
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
	// Claim the close (a concurrent Close from grpc-go, say, must not
	// close the wrapped conn first), dropping what is on the link.
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opErr("reset", net.ErrClosed)
	}
	c.closed, c.aborted = true, true
	c.broadcastLocked()
	c.mu.Unlock()
	if err := c.finishClose(); err != nil {
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
		if n, err, ok := c.readHeld(b); ok {
			return n, err
		}
		n, err := c.conn.Read(b)
		if n == 0 && isTimeout(err) {
			return 0, err
		}
		if c.holdBack(b[:n], err) {
			continue
		}
		return n, err
	}
}

// readOnReady is ReadOnReady with the faults of Read: it waits while the
// conn is stalled (or forever once half-open), and data read during a
// stall is held back until it ends.
func (c *FaultConn) readOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if bufSize > 0 && (len(c.pending) > 0 || c.pendingErr != nil) {
			buf := pool.Get(bufSize)
			n, err, ok := c.readHeld(*buf)
			if ok && n > 0 {
				return buf, n, nil
			}
			pool.Put(buf)
			if ok {
				return nil, 0, err
			}
			continue
		}
		if _, err := c.wait(dirRead, time.Time{}); err != nil {
			return nil, 0, c.opErr("read", err)
		}
		buf, n, err := c.rr.ReadOnReady(bufSize, pool)
		if n == 0 && isTimeout(err) {
			return nil, 0, err
		}
		var got []byte
		if buf != nil {
			got = (*buf)[:n]
		}
		if c.holdBack(got, err) {
			if buf != nil {
				pool.Put(buf)
			}
			continue
		}
		return buf, n, err
	}
}

// readHeld waits out a stall (or half-open) and hands out data held back
// during a stall; ok is false when there is none and the caller should
// read the wrapped conn. c.rmu must be held.
func (c *FaultConn) readHeld(b []byte) (n int, err error, ok bool) {
	if _, err := c.wait(dirRead, time.Time{}); err != nil {
		return 0, c.opErr("read", err), true
	}
	if len(c.pending) > 0 {
		n := copy(b, c.pending)
		c.pending = c.pending[n:]
		return n, nil, true
	}
	if err := c.pendingErr; err != nil {
		c.pendingErr = nil
		return 0, err, true
	}
	return 0, nil, false
}

// holdBack applies a stall or HalfOpen that began while the wrapped read
// was blocked to what it returned: data (and err) are held back until the
// stall ends, or discarded when half-open. It reports whether the caller
// must read again. c.rmu must be held.
func (c *FaultConn) holdBack(b []byte, err error) bool {
	c.mu.Lock()
	halfOpen, stalled := c.halfOpen, time.Now().Before(c.stallUntil)
	c.mu.Unlock()
	switch {
	case halfOpen:
		return true // a vanished host hears nothing
	case stalled:
		c.pending = append(c.pending, b...)
		c.pendingErr = err
		return true
	}
	return false
}

// Write sends b on the link once the faults allow: after any stall, paced
// by Faults.Bandwidth; under Faults.Latency the bytes are queued and reach
// the wrapped conn Latency after they were sent, so Write returns before
// they arrive (see Faults). Without latency it returns once the last byte
// has been handed to the wrapped conn. Writes never overtake each other.
// While half-open it returns len(b) at once and sends nothing.
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
	if rate > 0 {
		c.count(kindBandwidth, 1)
	}
	n := 0
	for n < len(b) {
		k := len(b) - n
		sent := time.Now() // when the link has sent b[:n+k]
		if rate > 0 {
			k = min(k, sliceLen(rate))
			if c.linkFree.After(sent) {
				sent = c.linkFree
			}
			sent = sent.Add(transmitTime(k, rate))
		}
		halfOpen, err := c.wait(dirWrite, sent)
		if err != nil {
			return n, c.opErr("write", err)
		}
		if halfOpen {
			c.count(kindSwallowed, uint64(len(b)-n))
			return len(b), nil
		}
		if rate > 0 {
			c.linkFree = sent
		}
		m, err := c.send(b[n:n+k], sent.Add(lat), lat > 0)
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// send hands p to the wrapped conn now, or, under latency or while earlier
// bytes are still on the link, queues a copy due at due. c.wmu must be
// held.
func (c *FaultConn) send(p []byte, due time.Time, delayed bool) (int, error) {
	c.mu.Lock()
	if err := c.sendErr; err != nil {
		c.mu.Unlock()
		return 0, err
	}
	if !delayed && !c.delivering {
		c.mu.Unlock()
		return c.conn.Write(p)
	}
	c.enqueueLocked(chunk{b: append([]byte(nil), p...), due: due})
	c.mu.Unlock()
	return len(p), nil
}

// enqueueLocked puts ch on the link and starts the deliverer if it is not
// running. c.mu must be held.
func (c *FaultConn) enqueueLocked(ch chunk) {
	c.queue = append(c.queue, ch)
	c.queued += len(ch.b)
	if !c.delivering {
		c.delivering = true
		c.idle = make(chan struct{})
		go c.deliver()
	}
}

// deliver is the link's far end: it writes each queued chunk to the
// wrapped conn when it is due and any stall is over, and exits once the
// queue is empty. While half-open it swallows what is queued; after Reset,
// or once a write failed, it drops it.
func (c *FaultConn) deliver() {
	c.mu.Lock()
	for {
		if len(c.queue) == 0 || c.aborted || c.sendErr != nil {
			for _, ch := range c.queue {
				if ch.done != nil {
					ch.done <- net.ErrClosed
				}
			}
			c.queue, c.queued, c.delivering = nil, 0, false
			close(c.idle)
			c.broadcastLocked()
			c.mu.Unlock()
			return
		}
		ch := c.queue[0]
		if c.halfOpen {
			c.popLocked()
			c.count(kindSwallowed, uint64(len(ch.b)))
			if ch.done != nil {
				ch.done <- nil
			}
			continue
		}
		now := time.Now()
		wake := ch.due
		if c.stallUntil.After(wake) {
			wake = c.stallUntil
		}
		if now.Before(wake) {
			// A runtime timer, not the hub's: bytes on the link must
			// still arrive (or be dropped by Close) once the hub is
			// closed, or this goroutine would wait forever.
			changed := c.changed
			c.mu.Unlock()
			t := time.NewTimer(wake.Sub(now))
			select {
			case <-t.C:
			case <-changed:
				t.Stop()
			}
			c.mu.Lock()
			continue
		}
		changed := c.changed // taken before the write: a deadline moved during it wakes the retry
		c.mu.Unlock()
		var err error
		n := 0
		if ch.done != nil {
			ch.done <- c.closeWrite()
		} else {
			n, err = c.conn.Write(ch.b)
		}
		if isTimeout(err) {
			// The write deadline (which the wrapped conn shares) has
			// passed: bytes on the link are not lost to it; they wait
			// until the deadline moves, Close or Reset.
			<-changed
			c.mu.Lock()
			c.queue[0].b = ch.b[n:]
			c.queued -= n
			continue
		}
		c.mu.Lock()
		c.popLocked()
		if err != nil && c.sendErr == nil {
			c.sendErr = err
		}
	}
}

// popLocked removes the queue's head and wakes writers waiting for room.
// c.mu must be held.
func (c *FaultConn) popLocked() {
	c.queued -= len(c.queue[0].b)
	c.queue[0] = chunk{}
	c.queue = c.queue[1:]
	c.broadcastLocked()
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
// through NetConn methods), after the data written before has arrived
// (Faults.Latency after it was sent) and any stall, so the peer reads
// io.EOF after that data. It returns once the shutdown is done. While
// half-open it does nothing. It returns an error matching
// errors.ErrUnsupported if the conn beneath has no CloseWrite.
func (c *FaultConn) CloseWrite() error {
	if _, ok := transport.Beneath[interface{ CloseWrite() error }](c.conn); !ok {
		return c.opErr("close", fmt.Errorf("testutil: no CloseWrite on a %T: %w", c.conn, errors.ErrUnsupported))
	}
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.mu.Lock()
	lat := max(c.faults.Latency, 0)
	c.mu.Unlock()
	halfOpen, err := c.wait(dirWrite, time.Time{})
	if err != nil {
		return c.opErr("close", err)
	}
	if halfOpen {
		return nil
	}
	c.mu.Lock()
	if lat == 0 && !c.delivering {
		c.mu.Unlock()
		return c.closeWrite()
	}
	done := make(chan error, 1)
	c.enqueueLocked(chunk{due: time.Now().Add(lat), done: done})
	c.mu.Unlock()
	if err := <-done; err != nil {
		return c.opErr("close", err)
	}
	return nil
}

func (c *FaultConn) closeWrite() error {
	cw, _ := transport.Beneath[interface{ CloseWrite() error }](c.conn)
	return cw.CloseWrite()
}

// Close closes the wrapped conn, once the bytes still on the link (under
// Latency) have arrived, as the kernel still sends what a closed socket
// had queued; but it waits at most until the last of them is due, and no
// more than 2 s (plus a second for the wrapped conn to take them), then
// drops the rest and closes regardless. A second Close returns an error
// matching net.ErrClosed. Parked
// Reads and Writes return net.ErrClosed; those blocked in the wrapped conn
// return what its Close gives them.
func (c *FaultConn) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return c.opErr("close", net.ErrClosed)
	}
	c.closed = true
	c.broadcastLocked()
	c.mu.Unlock()
	return c.finishClose()
}

// finishClose is Close's work after the caller, alone, has set c.closed:
// flush the link (bounded), close the wrapped conn, wait for the
// deliverer.
func (c *FaultConn) finishClose() error {
	c.mu.Lock()
	var idle chan struct{}
	var last time.Time
	if c.delivering {
		idle = c.idle
		if n := len(c.queue); n > 0 {
			last = c.queue[n-1].due
		}
	}
	c.mu.Unlock()
	if c.group != nil {
		c.group.remove(c)
	}
	if idle != nil {
		// Flush, bounded: a wrapped Write blocked on a peer that does
		// not read is released by the wrapped Close below.
		t := time.NewTimer(min(time.Until(last), 2*time.Second) + time.Second)
		select {
		case <-idle:
		case <-t.C:
		}
		t.Stop()
		c.mu.Lock()
		c.aborted = true // drop what is left
		c.broadcastLocked()
		c.mu.Unlock()
	}
	err := c.conn.Close()
	if idle != nil {
		<-idle
	}
	return err
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

// wait parks the caller until at (zero: now) and any stall have passed,
// and, for a write, until the link has room (see maxQueued). It
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
			full := d == dirWrite && c.queued >= maxQueued
			if !now.Before(wake) && !full {
				c.mu.Unlock()
				return false, nil
			}
			if full && !now.Before(wake) {
				wake = time.Time{} // until the deliverer makes room
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

// Accept waits for the next conn and returns it wrapped in a FaultConn,
// after the OnAccept callback has run: a *FaultConn, or, when the accepted
// conn has grpc-go's ReadOnReady read path (a grpcopt.Listen conn has), a
// wrapper that keeps that path with the faults applied on it, so grpc-go
// reads as it does in production. FaultConnOf returns the *FaultConn of
// either. Errors are the wrapped listener's.
func (l *FaultListener) Accept() (net.Conn, error) {
	c, err := l.l.Accept()
	if err != nil {
		return nil, err
	}
	return l.g.wrap(c).netConn(), nil
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
// grpcopt.Config.DialOption), and returns it wrapped in a FaultConn after
// the OnDial callback has run: a *FaultConn, or, when the dialed conn has
// grpc-go's ReadOnReady read path (a hub conn has, so usually), a wrapper
// that keeps that path with the faults applied on it. FaultConnOf returns
// the *FaultConn of either.
func (d *FaultDialer) Dial(ctx context.Context, addr string) (net.Conn, error) {
	c, err := d.cfg.Dial(ctx, addr)
	if err != nil {
		return nil, err
	}
	return d.g.wrap(c).netConn(), nil
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
