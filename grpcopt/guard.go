package grpcopt

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/mem"

	"github.com/hubio/hubio/internal/deadline"
)

// This file is the ConnectionTimeout guard: it keeps grpc.ConnectionTimeout
// for a conn that ServerHandshake moved off its raw conn, and counts the
// HTTP/2 client preface and first frame to know when that timeout stops
// applying.
//
// grpc-go sets the server's connection timeout as the raw conn's deadline
// before ServerHandshake and clears it, on the raw conn, once the preface
// and first frame have arrived. Those deadlines reach sock, the socket
// beneath raw (raw itself, or the conn under wrappers whose deadline
// setters are promoted from it), but not the hub conn, which has its own
// fd. A watcher goroutine parks in a RawConn.Read on sock: it never reads
// a byte, only waits, and so wakes when that deadline passes or sock is
// closed. Sock stays open until the guard ends; it shares the socket with
// the hub conn.
//
// # States
//
// guard.state starts at phaseRunning and moves once, by a CAS, to one of:
//   - phaseOver: the phase ended first. stop moves it, on the goroutine
//     that ends the phase: grpc-go's goroutine for the conn, in
//     ServerHandshake (the inner handshake failed or dispatched the conn,
//     or newGuard found no syscall.Conn to watch) or in phase.count once
//     grpc-go has read the preface and first frame; or whichever goroutine
//     closes the conn grpc-go was handed (phaseConn.Close). stop then ends
//     the watcher: it sets quit under mu and closes raw, or, where raw is
//     a wrapper the hub conn closes (keepRaw), moves sock's deadline into
//     the past, waits for done and closes sock.
//   - phaseFailed: sock's deadline passed, or sock was closed, first. The
//     watcher goroutine (watchRaw) moves it when its RawConn.Read returns
//     (or, for a sock whose hub has closed, the watcher's timer: below).
//     On a deadline it sets the hub conn's deadline in the past, so that
//     grpc-go's handshake or preface read fails with a timeout, as it would
//     have on raw, then clears sock's deadline (under mu, unless quit is
//     set) and waits on: for stop (grpc-go closed the conn it was handed)
//     or for sock's close. On sock's close it closes the hub conn.
//
// When sock is a conn of a hub that has closed (a group hub; the
// credentials moved its socket to a live one), its RawConn.Read fails at
// once with the hub's close error, which reports neither sock's deadline
// nor its close (sockHubClosed). The watcher then times the deadline
// itself: grpc-go's deadline is still kept on sock's registration
// (internal/deadline.ReadOf reads it), and the watcher arms a timer for it
// and leaves. If the phase is still running when the timer fires, the
// timer moves it to phaseFailed and closes the hub conn: grpc-go's
// handshake or preface read fails (with net.ErrClosed where raw would have
// given a timeout) and grpc-go closes raw, a close no wait can see here,
// so the hub conn is closed first rather than after it. stop stops the
// timer; a sock with no deadline is left unwatched, and stop alone ends
// the phase.
//
// quit is set once, by stop under mu, and read by the watcher; done is
// closed by the watcher when it returns; timer is set by the watcher under
// mu unless quit is set, and stopped by stop under mu. mu, the guard's
// only lock, is taken by stop and by the watcher.
//
// # What each state relies on in grpc-go (v1.85.0)
//
//   - phaseRunning, the watch on sock's deadline: server.go,
//     Server.handleRawConn, called on a goroutine of its own for each conn
//     Server.Serve accepts, calls rawConn.SetDeadline(now +
//     connectionTimeout) before Server.newHTTP2Transport and
//     rawConn.SetDeadline(time.Time{}) after it returns, on the raw conn
//     only. newHTTP2Transport calls internal/transport/http2_server.go,
//     NewServerTransport, which calls Credentials.ServerHandshake(rawConn)
//     on that same goroutine.
//   - phaseOver from phase.count: NewServerTransport, after the handshake,
//     reads the client preface (io.ReadFull(t.conn, preface), 24 bytes) and
//     then the first frame (t.framer.fr.ReadFrame(), which must be
//     SETTINGS: a 9-byte header whose first 3 bytes give the payload's
//     length) through the conn ServerHandshake returned, on that same
//     goroutine, before handleRawConn clears the deadline; the framer reads
//     through bufio or, where the conn implements ReadOnReady, through
//     internal/transport/readyreader (http_util.go, bufferedReader), hence
//     phaseReadyConn. grpc-go reads a conn from one goroutine at a time
//     (NewServerTransport's, then http2Server.HandleStreams' on the
//     goroutine handleRawConn starts), so the counters need no lock. stop
//     returns before handleRawConn clears raw's deadline, so that clearing
//     never parks the watcher again.
//   - phaseOver from ServerHandshake: when ServerHandshake fails,
//     NewServerTransport returns the error and server.go,
//     Server.newHTTP2Transport, closes the raw conn, unless the error is
//     credentials.ErrConnDispatched, when it leaves the raw conn open: so
//     ServerHandshake closes only the hub conn, and stop releases raw's
//     fd.
//   - phaseFailed, closing the hub conn on sock's close: when
//     NewServerTransport fails, newHTTP2Transport closes only the raw conn;
//     NewServerTransport closes its transport (http2Server.Close, which
//     closes the conn ServerHandshake returned) only from the deferred func
//     it installs after its first t.framer.writer.Flush(), and an error
//     from framer.fr.WriteSettings before it (written straight to the conn
//     with grpc.WriteBufferSize(0)) returns without it.

// guard keeps grpc.ConnectionTimeout for a conn moved off its raw conn, as
// the top of this file describes.
type guard struct {
	raw     net.Conn
	sock    net.Conn // raw, or the socket beneath raw's wrappers
	keepRaw bool     // raw is a wrapper the hub conn closes: never close it here
	hc      *Conn
	state   atomic.Int32  // phaseRunning, then phaseOver or phaseFailed, once
	once    sync.Once     // ends the watcher once
	done    chan struct{} // closed when the watcher has returned; nil if none
	// mu orders stop's quit and its kick of sock's deadline against the
	// watcher clearing that deadline, so a kick is never undone.
	mu    sync.Mutex
	quit  atomic.Bool // set by stop (under mu): the watcher must leave
	timer *time.Timer // a closed hub's sock: the connection timeout (under mu)
}

const (
	phaseRunning = iota
	phaseOver
	phaseFailed
)

func newGuard(raw, sock net.Conn, hc *Conn, keepRaw bool) *guard {
	g := &guard{raw: raw, sock: sock, keepRaw: keepRaw, hc: hc}
	sc, ok := sock.(syscall.Conn)
	var rc syscall.RawConn
	var err error
	if ok {
		rc, err = sc.SyscallConn()
	}
	if !ok || err != nil {
		// No way to watch raw's deadline: nothing to keep.
		g.stop()
		return g
	}
	g.done = make(chan struct{})
	go g.watchRaw(rc)
	return g
}

// watchRaw is the watcher goroutine.
func (g *guard) watchRaw(rc syscall.RawConn) {
	defer close(g.done)
	err := rc.Read(func(uintptr) bool { return g.state.Load() != phaseRunning })
	if sockHubClosed(g.sock, err) {
		// sock is a conn of a hub that has closed (a group hub: the
		// credentials moved its socket to a live one). Its RawConn.Read
		// fails at once and can report neither raw's deadline nor raw's
		// close; that is not grpc-go closing raw. Time the deadline
		// instead, and leave.
		g.timeOnClosedHub()
		return
	}
	if !g.state.CompareAndSwap(phaseRunning, phaseFailed) {
		return // the phase ended first: the conn is grpc-go's now
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		g.hc.SetDeadline(deadline.Passed)
		g.mu.Lock()
		if g.quit.Load() {
			g.mu.Unlock()
			return
		}
		// Nobody reads sock: clear its passed deadline so as to park
		// until it is closed (or stop says to leave).
		g.sock.SetReadDeadline(time.Time{})
		g.mu.Unlock()
		rc.Read(func(uintptr) bool { return g.quit.Load() })
		if g.quit.Load() {
			return
		}
	}
	g.hc.Conn.Close()
}

// timeOnClosedHub keeps the connection timeout of a sock whose hub has
// closed, as the top of this file describes: a timer for the read deadline
// grpc-go set on sock before ServerHandshake, unless stop has come first
// or there is none. Watcher goroutine.
func (g *guard) timeOnClosedHub() {
	dl, ok := deadline.ReadOf(g.sock) // set by transport's init, which this package imports
	if !ok || dl.IsZero() {
		return
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.quit.Load() {
		return
	}
	g.timer = time.AfterFunc(time.Until(dl), func() {
		if g.state.CompareAndSwap(phaseRunning, phaseFailed) {
			g.hc.Conn.Close()
		}
	})
}

// sockHubClosed reports whether err, from a RawConn.Read on sock, is the
// close error of sock's hub rather than a sign that sock itself was closed
// (which fails the Read with net.ErrClosed, not the hub's error).
func sockHubClosed(sock net.Conn, err error) bool {
	h := hubOf(sock)
	return err != nil && h != nil && h.Err() != nil && errors.Is(err, h.Err())
}

// stop ends the phase, unless the watcher has already failed it, and ends
// the watcher: by closing raw, whose socket the hub conn has duplicated;
// or, where raw is a wrapper the hub conn closes later, by moving sock's
// read deadline into the past and waiting for the watcher to leave (before
// grpc-go clears that deadline, which would park the watcher again), then
// closing sock: its fd is a second one on the hub conn's socket, and a
// limiting listener sized to the fd limit (etcd's) would otherwise run out
// of fds at half its limit. The wrapper's own Close, when the hub conn
// closes, then finds sock closed and only releases its slot.
func (g *guard) stop() {
	g.state.CompareAndSwap(phaseRunning, phaseOver)
	g.once.Do(func() {
		g.mu.Lock()
		g.quit.Store(true)
		if g.timer != nil {
			g.timer.Stop()
		}
		if !g.keepRaw {
			g.raw.Close()
		} else if g.done != nil {
			g.sock.SetReadDeadline(deadline.Passed)
		}
		g.mu.Unlock()
		if g.keepRaw {
			if g.done != nil {
				<-g.done
			}
			g.sock.Close()
		}
	})
}

// watch wraps the conn returned to grpc-go so that the guard stops once
// the client preface and the frame after it have been read.
func (g *guard) watch(c net.Conn) net.Conn {
	if g.state.Load() != phaseRunning {
		return c
	}
	p := &phase{g: g}
	if hc, ok := c.(*Conn); ok {
		return &phaseReadyConn{phaseConn{Conn: c, p: p}, hc}
	}
	return &phaseConn{Conn: c, p: p}
}

// prefaceLen is the length of the HTTP/2 client connection preface.
const prefaceLen = 24

// phase counts the bytes grpc-go reads until the preface and the first
// frame (the client's SETTINGS) are complete. Reads happen on one goroutine
// at a time (grpc-go's reader), so the counters need no lock.
type phase struct {
	g    *guard
	seen int     // bytes read so far
	hdr  [3]byte // the first frame's length field (bytes 24–26)
	end  int     // bytes in preface and first frame, once known
	over atomic.Bool
}

func (p *phase) count(b []byte) {
	for i, c := range b {
		if off := p.seen + i; off >= prefaceLen && off < prefaceLen+3 {
			p.hdr[off-prefaceLen] = c
		}
	}
	p.seen += len(b)
	if p.end == 0 && p.seen >= prefaceLen+3 {
		p.end = prefaceLen + 9 + (int(p.hdr[0])<<16 | int(p.hdr[1])<<8 | int(p.hdr[2]))
	}
	if p.end != 0 && p.seen >= p.end {
		p.over.Store(true)
		p.g.stop()
	}
}

// phaseConn counts preface bytes on their way to grpc-go.
type phaseConn struct {
	net.Conn
	p *phase
}

func (c *phaseConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && !c.p.over.Load() {
		c.p.count(b[:n])
	}
	return n, err
}

// SyscallConn is the wrapped conn's, so that channelz reads the socket's
// options while the phase is watched.
func (c *phaseConn) SyscallConn() (syscall.RawConn, error) {
	if sc, ok := c.Conn.(syscall.Conn); ok {
		return sc.SyscallConn()
	}
	return nil, errors.ErrUnsupported
}

// NetConn returns the wrapped conn, as *Conn's does, so that
// transport.Beneath finds the hub conn under a conn still being watched.
func (c *phaseConn) NetConn() net.Conn { return c.Conn }

func (c *phaseConn) Close() error {
	c.p.g.stop()
	return c.Conn.Close()
}

// phaseReadyConn is phaseConn for a hub conn, keeping ReadOnReady.
type phaseReadyConn struct {
	phaseConn
	hc *Conn
}

func (c *phaseReadyConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	b, n, err := c.hc.ReadOnReady(bufSize, pool)
	if n > 0 && !c.p.over.Load() {
		c.p.count((*b)[:n])
	}
	return b, n, err
}
