package main

import (
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

// This file is the hub transport on a group of hubs (-hubs): transport
// "hubN", for N ≥ 2, gives the server and the client a poller.Group of N
// hubs each, wired through grpcopt.Config.Group; "hub" stays one hub per
// side from poller.New. The report gets each hub's load.

// groupSize returns N for a transport named "hubN" (N ≥ 2), 1 for "hub",
// and 0 for any other name.
func groupSize(name string) int {
	if name = baseTransport(name); name == transportHub {
		return 1
	}
	rest, ok := strings.CutPrefix(name, transportHub)
	if !ok {
		return 0
	}
	n, err := strconv.Atoi(rest)
	if err != nil || n < 2 || rest != strconv.Itoa(n) {
		return 0
	}
	return n
}

// hubTransportName is the transport name for a group of n hubs per side.
func hubTransportName(n int) string {
	if n == 1 {
		return transportHub
	}
	return transportHub + strconv.Itoa(n)
}

// expandHubs replaces "hub" in transports by one hub transport per group
// size in hubs (-hubs 1,2,4: hub, hub2, hub4), keeping the order.
func expandHubs(transports []string, hubs []int) []string {
	if len(hubs) == 0 || slices.Equal(hubs, []int{1}) {
		return transports
	}
	var out []string
	for _, t := range transports {
		if t != transportHub {
			out = append(out, t)
			continue
		}
		for _, n := range hubs {
			out = append(out, hubTransportName(n))
		}
	}
	return out
}

// newGroupEndpoints fills e for transport "hubN": a group of n hubs for the
// server (grpcopt.Config{Group}.Listen and ServerOption) and one for the
// client (its DialOption), as two processes would have, for the sides
// given. e.hubs lists the server's hubs, then the client's.
func newGroupEndpoints(e *endpoints, n int, on sides) error {
	var server, client *poller.Group
	e.close = func() {
		for _, g := range []*poller.Group{server, client} {
			if g != nil {
				g.Close()
			}
		}
	}
	var err error
	if on&sideServer != 0 {
		if server, err = poller.NewGroup(n); err != nil {
			return err
		}
		e.hubs = append(e.hubs, server.Hubs()...)
		scfg := grpcopt.Config{Group: server}
		if e.lis, err = scfg.Listen("tcp", "127.0.0.1:0"); err != nil {
			e.close()
			return err
		}
		e.serverOpts = append(e.serverOpts, scfg.ServerOption(nil))
	}
	if on&sideClient != 0 {
		if client, err = poller.NewGroup(n); err != nil {
			e.close()
			return err
		}
		e.hubs = append(e.hubs, client.Hubs()...)
		ccfg := grpcopt.Config{Group: client}
		e.dialOpts = append(e.dialOpts, ccfg.DialOption())
	}
	return nil
}

// hubCount is what one hub did while measuring.
type hubCount struct {
	Events uint64 `json:"events"`
	Polls  uint64 `json:"polls"`
}

// hubCounts returns each of e's hubs' cumulative counts, in e.hubs order.
func (e *endpoints) hubCounts() []hubCount {
	cs := make([]hubCount, len(e.hubs))
	for i, h := range e.hubs {
		st := h.Stats()
		cs[i] = hubCount{Events: st.Events, Polls: st.Iterations}
	}
	return cs
}

// hubCountsSince returns after minus before, hub by hub.
func hubCountsSince(before, after []hubCount) []hubCount {
	d := make([]hubCount, len(after))
	for i := range after {
		d[i] = hubCount{Events: after[i].Events - before[i].Events, Polls: after[i].Polls - before[i].Polls}
	}
	return d
}

// hubLoad is one hub's load in a run: readiness events per second and per
// epoll_wait call.
type hubLoad struct {
	eventsPerSec  float64
	eventsPerPoll float64
}

// hubLoadsOf turns a result's per-hub counts into loads.
func hubLoadsOf(r result) []hubLoad {
	ls := make([]hubLoad, len(r.HubEach))
	for i, c := range r.HubEach {
		ls[i].eventsPerSec = float64(c.Events) / r.Elapsed.Seconds()
		if c.Polls > 0 {
			ls[i].eventsPerPoll = float64(c.Events) / float64(c.Polls)
		}
	}
	return ls
}

// medianHubLoads takes the median of each hub's figures across rounds.
func medianHubLoads(ms []metrics) []hubLoad {
	if len(ms) == 0 {
		return nil
	}
	out := make([]hubLoad, len(ms[0].hubLoads))
	for i := range out {
		at := func(m metrics) hubLoad {
			if i < len(m.hubLoads) {
				return m.hubLoads[i]
			}
			return hubLoad{}
		}
		out[i] = hubLoad{
			eventsPerSec:  median(ms, func(m metrics) float64 { return at(m).eventsPerSec }),
			eventsPerPoll: median(ms, func(m metrics) float64 { return at(m).eventsPerPoll }),
		}
	}
	return out
}

// writeHubLoad writes each hub's load (median across rounds) for every hub
// transport and case: readiness events per second and events per
// epoll_wait, server hubs and client hubs on rows of their own. An even
// spread says the group balances; a hub far above the rest is the one that
// saturates first.
func writeHubLoad(w io.Writer, cfg config, results []caseResult) {
	var hubTs []int
	for t, name := range cfg.transports {
		if groupSize(name) > 0 || sharesHubs(name) {
			hubTs = append(hubTs, t)
		}
	}
	if len(hubTs) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "Each hub's load: readiness events/s (events per poll), hub 0 first.")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | transport | side | hubs |")
	fmt.Fprintln(w, "|---|---|---|---|")
	for _, cr := range results {
		for _, t := range hubTs {
			o, name := cr.outcomes[t], cfg.transports[t]
			if sharesHubs(name) {
				// One set of hubs for both sides: one row.
				if o.rounds == 0 || cr.c.setup != setupBoth {
					continue
				}
				fmt.Fprintf(w, "| %s | %s | both | %s |\n", cr.c, name, hubLoadCells(o.med.hubLoads))
				continue
			}
			n := groupSize(name)
			sideNames := []string{"server", "client"}
			switch cr.c.setup {
			case setupServer:
				sideNames = sideNames[:1]
			case setupClient:
				sideNames = sideNames[1:]
			}
			if o.rounds == 0 || len(o.med.hubLoads) != len(sideNames)*n {
				continue
			}
			for s, side := range sideNames {
				fmt.Fprintf(w, "| %s | %s | %s | %s |\n", cr.c, name, side, hubLoadCells(o.med.hubLoads[s*n:(s+1)*n]))
			}
		}
	}
}

// hubLoadCells prints hubs' loads as the hub-load table's last cell:
// events/s (events per poll) for each, hub 0 first.
func hubLoadCells(ls []hubLoad) string {
	cells := make([]string, len(ls))
	for i, l := range ls {
		cells[i] = fmt.Sprintf("%s (%.1f)", fmtRate(l.eventsPerSec), l.eventsPerPoll)
	}
	return strings.Join(cells, " · ")
}

// sharesHubs reports whether transport name puts the server and the
// client of one process on the same hubs (hub-shared, hub-paired).
func sharesHubs(name string) bool {
	name = baseTransport(name)
	return name == transportHubShared || name == transportHubPaired
}

// fmtRate prints a rate with k or M.
func fmtRate(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%.2fM", v/1e6)
	case v >= 1e3:
		return fmt.Sprintf("%.1fk", v/1e3)
	}
	return fmt.Sprintf("%.0f", v)
}
