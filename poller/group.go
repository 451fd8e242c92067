package poller

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime/pprof"
	"strconv"
	"sync/atomic"
)

// Balance is how a Group assigns new conns to its hubs.
type Balance int

const (
	// LeastRegistered (the default) picks the live hub with the fewest
	// registered conns (Stats.Conns: listening sockets are not load), so
	// that long-lived conns spread evenly however they come and go. Ties
	// go round robin.
	LeastRegistered Balance = iota
	// RoundRobin picks the live hubs in turn, ignoring their load.
	RoundRobin
)

// String returns the policy's name.
func (b Balance) String() string {
	if b == RoundRobin {
		return "round-robin"
	}
	return "least-registered"
}

// WithBalance sets how a Group assigns conns to its hubs (LeastRegistered by
// default). It is a GroupOption only: New does not accept it.
func WithBalance(b Balance) GroupOption { return balanceOption(b) }

// balanceOption is the GroupOption WithBalance returns.
type balanceOption Balance

func (b balanceOption) applyGroup(g *groupOptions) { g.balance = Balance(b) }

// errGroupClosedTwice is returned by a second Group.Close.
var errGroupClosedTwice = fmt.Errorf("poller: group already closed: %w", net.ErrClosed)

// Group is a fixed set of hubs, each with its own goroutine, epoll set and
// timers, among which new conns are spread: one hub tops out near one core's
// worth of readiness events, a group of n serves up to n cores.
//
// A conn stays on the hub it was assigned for its whole life; only new conns
// are balanced. Next picks a hub for a new conn. A hub of the group that
// has closed (by its own Close, or because it failed) is skipped by Next,
// while the others keep serving; conns already on it fail as conns of a
// closed hub do.
//
// Ownership: the hubs slice is written once by NewGroup and only read
// afterwards; next and closed are atomics. A Group holds no lock of its own,
// so it adds nothing to the hubs' lock order: Next reads each hub's counters
// without locks, and Close takes each hub's locks in turn, never two hubs'
// at once.
type Group struct {
	hubs    []*Hub
	balance Balance
	// next is the round-robin cursor: RoundRobin's turn, and where
	// LeastRegistered starts scanning so that ties spread.
	next atomic.Uint64
	// closed is set by the first Close.
	closed atomic.Bool
}

// GroupStats are a group's counters: one Stats per hub, in Hubs order, and
// their sum.
type GroupStats struct {
	Hubs  []Stats
	Total Stats
}

// NewGroup starts n hubs (n ≥ 1), each created by New with the options
// among opts that are Options; WithBalance sets the group's Balance. Each
// hub goroutine carries the pprof labels hubio=hub and hubio.hub=<its
// index>, so go tool pprof -tags shows each hub's load. If a hub cannot be
// created, those already started are closed and the error is returned.
func NewGroup(n int, opts ...GroupOption) (*Group, error) {
	if n < 1 {
		return nil, fmt.Errorf("poller: a group needs at least one hub, not %d", n)
	}
	o := groupOptions{}
	for _, opt := range opts {
		opt.applyGroup(&o)
	}
	g := &Group{hubs: make([]*Hub, 0, n), balance: o.balance}
	for i := range n {
		h, err := New(o.hub...)
		if err == nil {
			err = labelHub(h, i)
		}
		if err != nil {
			if h != nil {
				h.Close()
			}
			for _, h := range g.hubs {
				h.Close()
			}
			return nil, err
		}
		h.groupIndex = i
		g.hubs = append(g.hubs, h)
	}
	return g, nil
}

// labelHub gives hub i's goroutine the labels hubio=hub and hubio.hub=i,
// from a callback (which runs on that goroutine), and waits until it has.
func labelHub(h *Hub, i int) error {
	ctx := pprof.WithLabels(context.Background(), pprof.Labels("hubio", "hub", "hubio.hub", strconv.Itoa(i)))
	done := make(chan struct{})
	if err := h.Schedule(func() {
		pprof.SetGoroutineLabels(ctx)
		close(done)
	}); err != nil {
		return err
	}
	<-done
	return nil
}

// Hubs returns the group's hubs, in creation order (hub i carries the pprof
// label hubio.hub=i). The slice is the caller's.
func (g *Group) Hubs() []*Hub { return append([]*Hub(nil), g.hubs...) }

// Len returns the number of hubs in the group, closed ones included.
func (g *Group) Len() int { return len(g.hubs) }

// Next picks the hub for a new conn by the group's Balance, skipping hubs
// that have closed. Once every hub has closed it returns the first one,
// whose operations fail with its close error (matching net.ErrClosed). It
// never blocks and may be called from any goroutine, also from a callback.
//
// The pick and the conn's registration are not atomic: conns that pick at
// the same moment see the same counts, and LeastRegistered then spreads
// them by its round-robin tie break.
func (g *Group) Next() *Hub {
	n := uint64(len(g.hubs))
	start := g.next.Add(1) - 1
	if g.balance == RoundRobin {
		for i := range n {
			if h := g.hubs[(start+i)%n]; !h.closing.Load() {
				if i > 0 {
					g.next.Add(i) // the turn moves past the skipped hubs
				}
				return h
			}
		}
		return g.hubs[0]
	}
	var best *Hub
	var least int64
	for i := range n {
		h := g.hubs[(start+i)%n]
		if h.closing.Load() {
			continue
		}
		if r := h.conns.Load(); best == nil || r < least {
			best, least = h, r
		}
	}
	if best == nil {
		return g.hubs[0]
	}
	return best
}

// Err returns nil while at least one hub of the group runs, and the first
// hub's close error once all have closed.
func (g *Group) Err() error {
	for _, h := range g.hubs {
		if !h.closing.Load() {
			return nil
		}
	}
	return g.hubs[0].Err()
}

// Stats returns a snapshot of each hub's counters and their sum. A closed
// hub's counters stay as they were when it stopped.
func (g *Group) Stats() GroupStats {
	s := GroupStats{Hubs: make([]Stats, len(g.hubs))}
	for i, h := range g.hubs {
		st := h.Stats()
		s.Hubs[i] = st
		t := &s.Total
		t.Iterations += st.Iterations
		t.Events += st.Events
		t.Signals += st.Signals
		t.Writes += st.Writes
		t.Callbacks += st.Callbacks
		t.Timers += st.Timers
		t.Registered += st.Registered
		t.Conns += st.Conns
	}
	return s
}

// Close closes every hub of the group, as Hub.Close does, one after the
// other, and returns once all their goroutines have exited (those that were
// not the caller's: a callback may close its own group). A hub already
// closed by its own Hub.Close is allowed, and waited for all the same: if
// that Close came from one of its callbacks still running, the hub stops
// when the callback returns, and Close returns after that. A hub that
// stopped on its own (a callback's runtime.Goexit, a failing poll) makes
// Close return the error that stopped it, as a first Hub.Close does. Close
// returns the first such error, after closing the other hubs all the same.
// A second Close returns at once, without waiting for the first, with an
// error matching net.ErrClosed.
func (g *Group) Close() error {
	if !g.closed.CompareAndSwap(false, true) {
		return errGroupClosedTwice
	}
	var first error
	var closing []*Hub // closed before: their Close did not wait
	for _, h := range g.hubs {
		err := h.Close()
		if errors.Is(err, errClosedTwice) {
			closing = append(closing, h)
			continue
		}
		if err != nil && first == nil {
			first = err
		}
	}
	// Wait once every hub has been told to close, so that a hub still in
	// the callback that closed it does not hold up closing the others; a
	// hub whose callback is the caller is not waited for (waitStopped).
	for _, h := range closing {
		h.waitStopped()
	}
	return first
}
