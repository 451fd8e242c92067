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

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// Credentials returns the transport credentials behind Config.ServerOption,
// for servers that build their options themselves (or combine credentials).
func (c Config) Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	if inner == nil {
		inner = insecure.NewCredentials()
	}
	return &creds{cfg: c, inner: inner, warned: new(atomic.Bool)}
}

// creds moves accepted conns onto a hub, then hands them to inner.
type creds struct {
	cfg   Config
	inner credentials.TransportCredentials
	// warned is set once the closed hub has been logged; shared by clones,
	// so a server logs it once however grpc-go copies its credentials.
	warned *atomic.Bool
}

// logger reports what grpc-go would only log at info level: a handshake
// error on its own is logged by grpc-go at that level, which is off by
// default.
var logger = grpclog.Component("hubio")

// ClientHandshake is inner's: these credentials move server conns only.
func (c *creds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.inner.ClientHandshake(ctx, authority, conn)
}

// ServerHandshake moves raw onto the hub (unless it already is a conn of
// this hub), then runs inner's handshake over the hub conn. grpc-go calls it
// from the goroutine serving the new conn, with raw's deadline set to the
// server's connection timeout.
func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.cfg.unsupported() {
		return c.inner.ServerHandshake(raw)
	}
	if onHub(raw, c.cfg.hub()) {
		// Accepted by Listen on this hub (maybe behind a wrapper, such as
		// testutil's fault injector, which must stay in the path):
		// grpc-go's deadlines reach it, so it is handed on as it is.
		return c.inner.ServerHandshake(raw)
	}
	src := raw
	if hc, ok := raw.(*Conn); ok {
		src = hc.Conn // a hub conn of another hub: move its socket
	}
	moved, err := transport.NewConnHub(c.cfg.hub(), src)
	if errors.Is(err, transport.ErrNotSocket) {
		// A listener's own conn type (a limiting or PROXY-protocol
		// wrapper, say): moving the socket beneath would bypass the
		// wrapper, so the conn is served where it is, by package net.
		return c.inner.ServerHandshake(raw)
	}
	if err != nil {
		err = fmt.Errorf("grpcopt: moving the accepted conn onto the hub: %w", err)
		if c.cfg.hub().Err() != nil && c.warned.CompareAndSwap(false, true) {
			// Every conn will fail the same way, and grpc-go's Serve keeps
			// accepting (it stops only for its listener's errors): say so
			// once, where it is seen by default.
			logger.Errorf("%v; every conn this server accepts is closed until it stops (stop servers before closing their hub)", err)
		}
		return nil, nil, err
	}
	hc, err := c.cfg.wrap(moved)
	if err != nil {
		return nil, nil, err
	}
	g := newGuard(raw, hc)
	conn, auth, err := c.inner.ServerHandshake(hc)
	if err != nil {
		g.stop()
		hc.Close()
		return nil, nil, err
	}
	return g.watch(conn), auth, nil
}

// onHub reports whether c is a hub conn of h, or wraps one: it follows
// NetConn methods (as tls.Conn and wrappers offer) a few levels down.
func onHub(c net.Conn, h *poller.Hub) bool {
	for range 8 {
		switch hc := c.(type) {
		case *Conn:
			return hc.Hub() == h
		case *transport.Conn:
			return hc.Hub() == h
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return false
		}
		c = u.NetConn()
	}
	return false
}

// Info returns inner's protocol info.
func (c *creds) Info() credentials.ProtocolInfo { return c.inner.Info() }

// Clone clones inner too.
func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{cfg: c.cfg, inner: c.inner.Clone(), warned: c.warned}
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
// RawConn.Read on raw (it never reads a byte, only waits) and so wakes when
// that deadline passes or raw is closed. Exactly one outcome wins, decided
// by a CAS on state:
//   - the phase ends first (stop, from the conn that counts preface bytes,
//     or a failed handshake): state becomes phaseOver, raw is closed and
//     the watcher exits;
//   - the deadline passes first: state becomes phaseFailed and the hub
//     conn's deadline is set in the past, so grpc-go's handshake or
//     preface read fails with a timeout, as it would have on raw;
//   - raw is closed by grpc-go first (a failed handshake): phaseFailed,
//     and the hub conn is closed.
//
// Raw stays open until then; it shares the socket with the hub conn.
type guard struct {
	raw   net.Conn
	hc    *Conn
	state atomic.Int32 // phaseRunning, then phaseOver or phaseFailed, once
	once  sync.Once    // closes raw once
}

const (
	phaseRunning = iota
	phaseOver
	phaseFailed
)

// aLongTimeAgo is a deadline that has passed.
var aLongTimeAgo = time.Unix(1, 0)

func newGuard(raw net.Conn, hc *Conn) *guard {
	g := &guard{raw: raw, hc: hc}
	sc, ok := raw.(syscall.Conn)
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
	go func() {
		err := rc.Read(func(uintptr) bool { return g.state.Load() != phaseRunning })
		if !g.state.CompareAndSwap(phaseRunning, phaseFailed) {
			return // the phase ended first: the conn is grpc-go's now
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			g.hc.SetDeadline(aLongTimeAgo)
			return
		}
		g.hc.Close()
	}()
	return g
}

// stop ends the phase, unless the watcher has already failed it, and
// closes raw, which ends the watcher.
func (g *guard) stop() {
	g.state.CompareAndSwap(phaseRunning, phaseOver)
	g.once.Do(func() { g.raw.Close() })
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
