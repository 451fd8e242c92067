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
// counts every handshake adds to (ReadServerStats, and a Config's own
// ServerCounters), and the three things they log once per server: a conn
// left off the hub, a conn refused under RequireHub, and a closed hub.

// ServerStats counts what ServerOption credentials did with the conns they
// were handed: those of the whole process (ReadServerStats), or of the
// servers built from one Config (Config.Stats). A program reads them to see
// that its servers' conns really are on a hub.
type ServerStats struct {
	// Handshakes is the number of conns the credentials were handed.
	Handshakes uint64
	// Unwrapped is the number of those whose socket was taken from beneath
	// a wrapper that only adds behaviour around Close or socket options
	// (a limiting listener's conn).
	Unwrapped uint64
	// OffHub is the number left off the hub: their wrapper changes the
	// byte stream, or hides its socket. Each is served through the conn
	// grpc-go was given, as without hubio, or, with Config.RequireHub,
	// refused (and counted in Refused too).
	OffHub uint64
	// Refused is the number of OffHub conns that Config.RequireHub
	// refused: their handshake failed with ErrOffHub, and the client saw
	// the conn closed before the server's preface.
	Refused uint64
	// HubClosed is the number of conns closed because the hub they were to
	// move onto had closed: the client sees each reset (see
	// Config.ServerOption).
	HubClosed uint64
}

// counter names one count of ServerStats.
type counter int

const (
	cHandshakes counter = iota
	cUnwrapped
	cOffHub
	cRefused
	cHubClosed
	numCounters
)

// ServerCounters is where credentials count: one for the process
// (ReadServerStats), and one per Config that sets Config.Stats. The zero
// value is ready to use; any goroutine may add and read.
type ServerCounters struct {
	n [numCounters]atomic.Uint64
}

// Read returns the counts so far. Each count is read atomically, the set
// is not: a handshake running meanwhile may show in one count and not yet
// in another.
func (s *ServerCounters) Read() ServerStats {
	return ServerStats{
		Handshakes: s.n[cHandshakes].Load(),
		Unwrapped:  s.n[cUnwrapped].Load(),
		OffHub:     s.n[cOffHub].Load(),
		Refused:    s.n[cRefused].Load(),
		HubClosed:  s.n[cHubClosed].Load(),
	}
}

// processStats holds the process's ServerStats.
var processStats ServerCounters

// ReadServerStats returns the ServerStats of every server of the process
// so far. To tell one server's from another's, give each Config its own
// ServerCounters (Config.Stats).
func ReadServerStats() ServerStats { return processStats.Read() }

// count adds one to counter k of the process and of the Config's
// ServerCounters, if any.
func (c *creds) count(k counter) {
	processStats.n[k].Add(1)
	if c.cfg.Stats != nil {
		c.cfg.Stats.n[k].Add(1)
	}
}

// logger reports what grpc-go would only log at info level: a handshake
// error on its own is logged by grpc-go at that level, which is off by
// default.
var logger = grpclog.Component("hubio")

// logOnce holds what a server has logged already; clones of its credentials
// share it, so a server logs each thing once however grpc-go copies them.
type logOnce struct {
	hubClosed, offHub, refused atomic.Bool
}

// ErrOffHub is matched by the handshake error of a conn that Config.RequireHub
// refused: one whose wrapper cannot be bypassed (see ServerOption).
var ErrOffHub = errors.New("grpcopt: conn cannot be put on the hub")

// offHubRemedy says how to put a wrapped conn on the hub.
const offHubRemedy = "to put such conns on the hub, have the wrapper embed its conn and define only Close and " +
	"socket-option methods (or implement grpcopt.Bypassable), or wrap a grpcopt.Listen listener instead"

// offHub handles a conn whose socket cannot be reached without bypassing a
// wrapper that must stay in the path: counted, logged once per server, and
// served through raw as it is, or refused under RequireHub.
func (c *creds) offHub(raw net.Conn, why string) (net.Conn, credentials.AuthInfo, error) {
	c.count(cOffHub)
	if c.cfg.RequireHub {
		c.count(cRefused)
		if c.logged.refused.CompareAndSwap(false, true) {
			logger.Errorf("grpcopt: Config.RequireHub refused a conn of type %T (%s): its handshake fails with ErrOffHub, "+
				"and the client sees the conn closed before the server's preface; ServerStats.Refused counts these "+
				"(only this first one is logged); %s, or unset RequireHub to serve them off the hub", raw, why, offHubRemedy)
		}
		return nil, nil, &net.OpError{Op: "handshake", Net: raw.LocalAddr().Network(), Source: raw.LocalAddr(), Addr: raw.RemoteAddr(),
			Err: fmt.Errorf("%w: a %T (%s), and Config.RequireHub is set", ErrOffHub, raw, why)}
	}
	if c.logged.offHub.CompareAndSwap(false, true) {
		logger.Warningf("grpcopt: conns of type %T stay off the hub (%s): they are served through the conn grpc-go was given, "+
			"as without hubio; ServerStats.OffHub counts them; %s; Config.RequireHub refuses such conns", raw, why, offHubRemedy)
	}
	return c.inner.ServerHandshake(raw)
}

// hubClosed counts a conn closed because the hub it was to move onto has
// closed, and logs err, the failure to move it, once per server: every
// conn will fail the same way, and grpc-go's Serve keeps accepting (it
// stops only for its listener's errors), so it is said where it is seen by
// default, with the way out.
func (c *creds) hubClosed(err error) {
	c.count(cHubClosed)
	if c.logged.hubClosed.CompareAndSwap(false, true) {
		logger.Errorf("%v; this server now closes every conn it accepts (clients see them reset; ServerStats.HubClosed "+
			"counts them) until it is stopped: stop it (grpc.Server.Stop or GracefulStop) and serve again with options "+
			"on a live hub. Stop servers before closing their hub, or serve a grpcopt.Listen listener on the same hub, "+
			"whose Accept fails once the hub closes, so that Serve returns", err)
	}
}
