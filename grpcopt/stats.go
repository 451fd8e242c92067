package grpcopt

import (
	"errors"
	"fmt"
	"net"
	"sync/atomic"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/grpclog"
)

// This file is what the ServerOption credentials tell the process: the
// counts every handshake adds to (ReadServerStats), and the two things
// they log once per server, a conn left off the hub and a closed hub.

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

// ErrOffHub is matched by the handshake error of a conn that Config.RequireHub
// refused: one whose wrapper cannot be bypassed (see ServerOption).
var ErrOffHub = errors.New("grpcopt: conn cannot be put on the hub")

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
			"define only Close and socket-option methods (or implement grpcopt.Bypassable), or wrap a grpcopt.Listen listener instead; "+
			"Config.RequireHub refuses such conns", raw, why)
	}
	return c.inner.ServerHandshake(raw)
}

// logHubClosed logs err, the failure to move a conn onto a hub that has
// closed, once per server: every conn will fail the same way, and grpc-go's
// Serve keeps accepting (it stops only for its listener's errors), so it is
// said where it is seen by default.
func (c *creds) logHubClosed(err error) {
	if c.warned.CompareAndSwap(false, true) {
		logger.Errorf("%v; every conn this server accepts is closed until it stops (stop servers before closing their hub)", err)
	}
}
