package grpcopt

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/mem"

	"github.com/hubio/hubio/internal/deadline"
	"github.com/hubio/hubio/transport"
)

// Credentials returns the transport credentials behind Config.ServerOption,
// for servers that build their options themselves (or combine credentials).
// It panics if the Config fails validation (see ServerOptions).
func (c Config) Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	c.mustValidate()
	if inner == nil {
		inner = insecure.NewCredentials()
	}
	return &creds{cfg: c, inner: inner, warned: new(atomic.Bool), warnedOff: new(atomic.Bool)}
}

// creds moves accepted conns onto a hub, then hands them to inner.
type creds struct {
	cfg   Config
	inner credentials.TransportCredentials
	// warned is set once the closed hub has been logged, warnedOff once a
	// conn left off the hub has; shared by clones, so a server logs each
	// once however grpc-go copies its credentials.
	warned, warnedOff *atomic.Bool
}

// ErrOffHub is matched by the handshake error of a conn that Config.RequireHub
// refused: one whose wrapper cannot be bypassed (see ServerOption).
var ErrOffHub = errors.New("grpcopt: conn cannot be put on the hub")

// ServerStats counts what the ServerOption credentials of this process did
// with the conns they were handed. A program reads them with ReadServerStats
// to see that its servers' conns really are on a hub.
type ServerStats struct {
	// Handshakes is the number of conns the credentials were handed.
	Handshakes uint64
	// Unwrapped is the number of those whose socket was taken from beneath
	// a wrapper that only adds behaviour around Close or socket options
	// (a limiting listener's conn).
	Unwrapped uint64
	// OffHub is the number left off the hub, served by package net (or,
	// with Config.RequireHub, refused): their wrapper changes the byte
	// stream, or hides its socket.
	OffHub uint64
}

// serverStats holds the process's ServerStats; any goroutine adds to it.
var serverStats struct{ handshakes, unwrapped, offHub atomic.Uint64 }

// ReadServerStats returns the process's ServerStats so far.
func ReadServerStats() ServerStats {
	return ServerStats{
		Handshakes: serverStats.handshakes.Load(),
		Unwrapped:  serverStats.unwrapped.Load(),
		OffHub:     serverStats.offHub.Load(),
	}
}

// logger reports what grpc-go would only log at info level: a handshake
// error on its own is logged by grpc-go at that level, which is off by
// default.
var logger = grpclog.Component("hubio")

// ClientHandshake is inner's: these credentials move server conns only.
func (c *creds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.inner.ClientHandshake(ctx, authority, conn)
}

// ServerHandshake moves raw's socket onto the hub (unless it already is a
// conn of this hub), from beneath raw's wrappers where they can be
// bypassed, then runs inner's handshake over the hub conn. grpc-go calls it
// from the goroutine serving the new conn, with raw's deadline set to the
// server's connection timeout.
func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.cfg.unsupported() {
		return c.inner.ServerHandshake(raw)
	}
	serverStats.handshakes.Add(1)
	if c.cfg.owns(raw) {
		// Accepted by Listen on this hub (maybe behind a wrapper, such as
		// testutil's fault injector, which must stay in the path):
		// grpc-go's deadlines reach it, so it is handed on as it is.
		return c.inner.ServerHandshake(raw)
	}
	sock, why := socketBeneath(raw)
	if sock == nil {
		return c.offHub(raw, why)
	}
	wrapped := sock != raw
	if wrapped {
		serverStats.unwrapped.Add(1)
		if hc := hubConn(sock); hc != nil && c.cfg.ownsHub(hc.Hub()) {
			// A Listen conn of this hub behind a limiting wrapper: read it
			// directly, close it through the wrapper. grpc-go's deadlines
			// reach it through the wrapper's promoted setters.
			return c.inner.ServerHandshake(&Conn{Conn: hc, outer: raw})
		}
	}
	src := sock
	if hc, ok := sock.(*Conn); ok {
		src = hc.Conn // a hub conn of another hub: move its socket
	}
	h := c.cfg.hub() // picked once: with a Group, each call picks
	moved, err := transport.NewConnHub(h, src)
	if err != nil {
		err = fmt.Errorf("grpcopt: moving the accepted conn onto the hub: %w", err)
		if h.Err() != nil && c.warned.CompareAndSwap(false, true) {
			// Every conn will fail the same way, and grpc-go's Serve keeps
			// accepting (it stops only for its listener's errors): say so
			// once, where it is seen by default.
			logger.Errorf("%v; every conn this server accepts is closed until it stops (stop servers before closing their hub)", err)
		}
		return nil, nil, err
	}
	hc, err := c.cfg.wrap(moved, c.cfg.serverUserTimeout())
	if err != nil {
		return nil, nil, err
	}
	if wrapped {
		hc.outer = raw
	}
	g := newGuard(raw, sock, hc, wrapped)
	conn, auth, err := c.inner.ServerHandshake(hc)
	if err == credentials.ErrConnDispatched {
		// inner owns the hub conn now, and grpc-go leaves raw alone:
		// release raw's fd (a wrapper stays, the hub conn closes it).
		g.stop()
		return nil, nil, err
	}
	if err != nil {
		g.stop()
		// grpc-go closes raw itself (and with it a wrapper): close only
		// the hub conn, so a wrapper is closed once.
		hc.Conn.Close()
		return nil, nil, err
	}
	return g.watch(conn), auth, nil
}

// offHub handles a conn whose socket cannot be reached without bypassing a
// wrapper that must stay in the path: counted, logged once per server, and
// served by package net, or refused under RequireHub.
func (c *creds) offHub(raw net.Conn, why string) (net.Conn, credentials.AuthInfo, error) {
	serverStats.offHub.Add(1)
	if c.cfg.RequireHub {
		return nil, nil, &net.OpError{Op: "handshake", Net: raw.LocalAddr().Network(), Source: raw.LocalAddr(), Addr: raw.RemoteAddr(),
			Err: fmt.Errorf("%w: a %T (%s), and Config.RequireHub is set", ErrOffHub, raw, why)}
	}
	if c.warnedOff.CompareAndSwap(false, true) {
		logger.Warningf("grpcopt: conns of type %T stay off the hub and are served by package net (%s); "+
			"ReadServerStats().OffHub counts them. To put them on the hub, have the wrapper embed its conn and "+
			"define only Close and socket-option methods, or wrap a grpcopt.Listen listener instead; "+
			"Config.RequireHub refuses such conns", raw, why)
	}
	return c.inner.ServerHandshake(raw)
}

// hubConn returns c's *transport.Conn if c is a hub conn.
func hubConn(c net.Conn) *transport.Conn {
	switch hc := c.(type) {
	case *Conn:
		return hc.Conn
	case *transport.Conn:
		return hc
	}
	return nil
}

// Info returns inner's protocol info.
func (c *creds) Info() credentials.ProtocolInfo { return c.inner.Info() }

// Clone clones inner too; the clone shares the once-only warnings.
func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{cfg: c.cfg, inner: c.inner.Clone(), warned: c.warned, warnedOff: c.warnedOff}
}

// OverrideServerName is inner's.
//
// Deprecated: as for credentials.TransportCredentials.
func (c *creds) OverrideServerName(name string) error {
	return c.inner.OverrideServerName(name) //nolint:staticcheck // delegating a deprecated method
}

// guard keeps grpc.ConnectionTimeout for a conn moved off its raw conn.
//
// grpc-go sets the server's connection timeout as the raw conn's deadline
// before ServerHandshake and clears it, on the raw conn, once the HTTP/2
// preface and first frame have arrived. A watcher goroutine parks in a
// RawConn.Read on sock, the socket beneath raw (raw itself, or the conn
// under wrappers whose deadline setters are promoted from it): it never
// reads a byte, only waits, and so wakes when that deadline passes or sock
// is closed. Exactly one outcome wins, decided by a CAS on state:
//   - the phase ends first (stop, from the conn that counts preface bytes,
//     or a failed handshake): state becomes phaseOver and the watcher is
//     ended (see stop);
//   - the deadline passes first: state becomes phaseFailed and the hub
//     conn's deadline is set in the past, so grpc-go's handshake or
//     preface read fails with a timeout, as it would have on raw. The
//     watcher then waits on: for stop (grpc-go closed the conn it was
//     handed), or for sock's close, when it closes the hub conn, because
//     grpc-go closes only raw when NewServerTransport fails before it has
//     installed its deferred Close (a failed unbuffered SETTINGS write);
//   - sock is closed by grpc-go first (a failed handshake): phaseFailed,
//     and the hub conn is closed.
//
// Sock stays open until then; it shares the socket with the hub conn.
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
	mu   sync.Mutex
	quit atomic.Bool // set by stop (under mu): the watcher must leave
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
