package grpcopt

import (
	"errors"
	"net"
	"sync"

	"github.com/hubio/hubio/transport"
)

// This file is Config.Group: conns spread across the hubs of a
// poller.Group. Dial and ServerOption pick a hub per conn through
// Config.pickHub; Listen returns a groupListener.

// listenGroup is Listen with a Group: the listening socket waits on one
// hub of the group, and each accepted conn is registered directly with the
// hub Group.Next() picks once it is accepted (transport.Listener.AcceptHubOn),
// so spreading costs no syscall.
func (c Config) listenGroup(network, address string) (net.Listener, error) {
	l, err := transport.Listen(c.Group.Next(), network, address)
	if err != nil {
		return nil, err
	}
	base := l.(*transport.Listener)
	unhook := c.admit(base)
	stop := c.watchGroup(base.Hub())
	return &groupListener{base: base, cur: base, cfg: c, unwatch: func() { stop(); unhook() }}, nil
}

// groupListener hands grpc-go *Conn values spread across a group's hubs.
//
// If the hub the listening socket waits on closes while others of the
// group still run, Accept moves the listening socket onto a live hub (a
// duplicate fd registered there) and goes on; only when the whole group
// has closed does Accept fail, as Listen's listener fails when its hub
// closes.
//
// Ownership: base is written once and owns the socket (and the unix socket
// file, removed when it closes); it is closed last, by Close. cur, under
// mu, is where Accept waits: base, or a duplicate on a live hub, which only
// move (under mu) and Close replace or close. mu is taken by Accept (to
// read cur, and to move) and Close; no other lock is held with it.
type groupListener struct {
	base *transport.Listener
	cfg  Config

	mu     sync.Mutex
	cur    *transport.Listener
	closed bool
	// unwatch stops the admission's loop-delay probes on the group's other
	// hubs and takes the listener's warning hook off the Admission (see
	// admission.go); called once, by the first Close.
	unwatch func()
}

// Accept returns the next conn as a *Conn on the hub the group picks. Its
// socket options are best-effort (see SockoptStats); a conn whose picked hub
// closed the moment it was accepted is closed and skipped: an error here
// would stop grpc.Server.Serve, which retries only temporary ones.
func (l *groupListener) Accept() (net.Conn, error) {
	for {
		l.mu.Lock()
		cur, closed := l.cur, l.closed
		l.mu.Unlock()
		if closed {
			return nil, &net.OpError{Op: "accept", Net: l.base.Addr().Network(), Addr: l.base.Addr(), Err: net.ErrClosed}
		}
		hc, err := cur.AcceptHubOn(l.cfg.pickHub)
		if err == nil {
			return l.cfg.wrap(hc, l.cfg.serverUserTimeout(), true), nil
		}
		if !errors.Is(err, net.ErrClosed) {
			return nil, err
		}
		switch {
		case cur.Hub().Err() != nil:
			// The listening socket's hub closed: wait on a live one.
			if !l.move(cur) {
				return nil, err
			}
		case l.cfg.Group.Err() != nil:
			return nil, err // every hub has closed
		}
		// Otherwise the listener was closed (the loop's check returns) or
		// the picked hub closed after the pick (that conn is lost; the
		// client sees its conn reset and reconnects).
	}
}

// move replaces cur, whose hub has closed, with a duplicate of the
// listening socket on a live hub of the group. It reports false if there is
// none, or the listener is closed.
func (l *groupListener) move(cur *transport.Listener) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	if l.cur != cur {
		return true // another Accept moved it already
	}
	h := l.cfg.Group.Next()
	if h.Err() != nil {
		return false
	}
	nl, err := transport.WrapListener(h, l.base)
	if err != nil {
		return false
	}
	if cur != l.base {
		cur.Close()
	}
	l.cur = nl.(*transport.Listener)
	l.cur.SetAdmission(l.cfg.Admission) // the same slots and pauses as base's
	return true
}

// Close stops listening: a blocked Accept returns net.ErrClosed, and the
// unix socket file Listen created is removed.
func (l *groupListener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return l.base.Close() // the second Close's error, as net's
	}
	l.closed = true
	cur := l.cur
	l.mu.Unlock()
	l.unwatch()
	if cur != l.base {
		cur.Close()
	}
	return l.base.Close()
}

// Addr returns the listening address.
func (l *groupListener) Addr() net.Addr { return l.base.Addr() }
