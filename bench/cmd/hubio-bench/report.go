package main

import (
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
)

// writeTable writes the throughput results as a markdown table, one row per
// case and transport, with a header saying how they were measured.
func writeTable(w io.Writer, cfg config, results []caseResult) {
	fmt.Fprintf(w, "## hubio-bench: gRPC echo, %s\n\n", strings.Join(cfg.transports, " vs "))
	fmt.Fprintf(w, "%s. Median of %d round(s) of %v each (after %v warm-up), transports interleaved; "+
		"%d client conn(s) shared by the callers. %s\n\n",
		environment(), cfg.rounds, cfg.duration, cfg.warmup, cfg.conns, setupText(cfg.setups))
	fmt.Fprintln(w, "| case | transport | RPCs/s | ± | p50 | p99 | p99.9 | allocs/RPC | CPU/RPC | peer CPU/RPC | threads | hub/std | hub/threads |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, cr := range results {
		for t, name := range cfg.transports {
			label := ""
			if t == 0 {
				label = cr.c.String()
			}
			o := cr.outcomes[t]
			if o.rounds == 0 {
				fmt.Fprintf(w, "| %s | %s | failed: %s | | | | | | | | | | |\n", label, name, cell(o.err))
				continue
			}
			m := o.med
			peerCPU := "–"
			if m.peerCPUPerRPC > 0 {
				peerCPU = fmtDur(m.peerCPUPerRPC)
			}
			fmt.Fprintf(w, "| %s | %s | %.0f | %s | %s | %s | %s | %.1f | %s | %s | %d | %s | %s |\n",
				label, name, m.rps, spread(o.all, func(m metrics) float64 { return m.rps }),
				fmtDur(m.p50), fmtDur(m.p99), fmtDur(m.p999),
				m.allocsPerRPC, fmtDur(m.cpuPerRPC), peerCPU, m.threads,
				ratioCell(cfg, cr, name, transportStd), ratioCell(cfg, cr, name, transportThreads))
		}
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "hub/std and hub/threads: a hub transport's RPCs/s over the other's (above 1: hub is faster; hubN: a group of N hubs per side). "+
		"±: half the range of the rounds' RPCs/s over their median. "+
		"CPU/RPC: the process holding the transport under test (set-up both: server and clients together); "+
		"peer CPU/RPC: the package-net process on the other side (set-ups server and client). "+
		"threads: peak OS threads of the process holding the transport.")
	writeRatios(w, cfg, results)
	writeHubCost(w, cfg, results)
	writeHubLoad(w, cfg, results)
	writeTelemetryCost(w, cfg, results)
	for _, cr := range results {
		for t, name := range cfg.transports {
			if o := cr.outcomes[t]; o.err != nil && o.rounds > 0 {
				fmt.Fprintf(w, "\nNote: %s %s: %d of %d rounds failed: %s\n", cr.c, name, cfg.rounds-o.rounds, cfg.rounds, cell(o.err))
			}
		}
	}
}

// writeHubCost writes what the hubs did per RPC in each case (both sides'
// hubs together): readiness events delivered, epoll_wait calls, and events
// per call. Nothing without a hub transport.
func writeHubCost(w io.Writer, cfg config, results []caseResult) {
	if !slices.ContainsFunc(cfg.transports, func(t string) bool { return groupSize(t) > 0 }) {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | transport | hub events/RPC | hub polls/RPC | events/poll |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|")
	for _, cr := range results {
		for h, name := range cfg.transports {
			o := cr.outcomes[h]
			if groupSize(name) == 0 || o.rounds == 0 {
				continue
			}
			per := "–"
			if o.med.hubPolls > 0 {
				per = fmt.Sprintf("%.1f", o.med.hubEvents/o.med.hubPolls)
			}
			fmt.Fprintf(w, "| %s | %s | %.2f | %.2f | %s |\n", cr.c, name, o.med.hubEvents, o.med.hubPolls, per)
		}
	}
}

// ratioCell returns hub's RPCs/s over other's on the hub row, "" on other
// rows and "–" where either is missing.
func ratioCell(cfg config, cr caseResult, row, other string) string {
	if groupSize(row) == 0 {
		return ""
	}
	h, o := slices.Index(cfg.transports, row), slices.Index(cfg.transports, other)
	if h < 0 || o < 0 || cr.outcomes[h].rounds == 0 || cr.outcomes[o].rounds == 0 || cr.outcomes[o].med.rps == 0 {
		return "–"
	}
	return fmt.Sprintf("%.2f", cr.outcomes[h].med.rps/cr.outcomes[o].med.rps)
}

// fmtDur prints d with three significant figures or so.
func fmtDur(d time.Duration) string {
	switch {
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%.1fµs", float64(d)/float64(time.Microsecond))
	case d < time.Second:
		return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond))
	}
	return fmt.Sprintf("%.2fs", d.Seconds())
}

// fmtBytes prints n in KiB or MiB.
func fmtBytes(n float64) string {
	switch {
	case n >= 1<<20 || n <= -(1<<20):
		return fmt.Sprintf("%.1f MiB", n/(1<<20))
	case n >= 1<<10 || n <= -(1<<10):
		return fmt.Sprintf("%.1f KiB", n/(1<<10))
	}
	return fmt.Sprintf("%.0f B", n)
}

// cell makes an error fit in one table cell.
func cell(err error) string {
	if err == nil {
		return "unknown error"
	}
	s := strings.NewReplacer("|", "/", "\n", " ").Replace(err.Error())
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	return s
}

// writeTelemetryCost writes what telemetry costs per case: RPCs/s and
// allocations per RPC of hub-global (on, no MeterProvider installed), hub
// (grpcopt's default: off) and hub-sdk (an SDK provider) against hub-notel
// (no telemetry), from the same run.
// Nothing unless hub-notel and one of the others ran.
func writeTelemetryCost(w io.Writer, cfg config, results []caseResult) {
	base := slices.Index(cfg.transports, transportHubNoTel)
	if base < 0 {
		return
	}
	var cols []int
	for _, name := range []string{transportHubGlobal, transportHub, transportHubSDK, transportHubSDKProd, transportHubSDKWLat} {
		if i := slices.Index(cfg.transports, name); i >= 0 {
			cols = append(cols, i)
		}
	}
	if len(cols) == 0 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "| case |")
	for _, c := range cols {
		fmt.Fprintf(w, " %s RPCs/s vs notel | %s Δallocs/RPC |", cfg.transports[c], cfg.transports[c])
	}
	fmt.Fprintln(w)
	fmt.Fprint(w, "|---|")
	for range cols {
		fmt.Fprint(w, "--:|--:|")
	}
	fmt.Fprintln(w)
	for _, cr := range results {
		b := cr.outcomes[base]
		fmt.Fprintf(w, "| %s |", cr.c)
		for _, c := range cols {
			o := cr.outcomes[c]
			if b.rounds == 0 || o.rounds == 0 || b.med.rps == 0 {
				fmt.Fprint(w, " – | – |")
				continue
			}
			fmt.Fprintf(w, " %+.1f%% | %+.1f |", 100*(o.med.rps/b.med.rps-1), o.med.allocsPerRPC-b.med.allocsPerRPC)
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintln(w, "\nTelemetry cost: RPCs/s relative to hub-notel (no telemetry) and extra allocations per RPC; "+
		"hub-global records with no MeterProvider installed, hub (grpcopt's default) records nothing, hub-sdk into an OpenTelemetry SDK provider, "+
		"hub-sdkprod as hub-sdk with the syscall sizes exported by telemetry/sdkproducer, hub-sdk-wlat as hub-sdk with A80's write latencies (SO_TIMESTAMPING on one write in 1000).")
}

// setupText says, for the table's header, where each set-up ran server and
// clients.
func setupText(setups []string) string {
	var parts []string
	for _, s := range setups {
		switch s {
		case setupServer:
			parts = append(parts, "Cases marked [server alone]: the server alone on the transport, in a fresh process; "+
				"the clients on package net in a second process (as deployed behind other machines' clients).")
		case setupClient:
			parts = append(parts, "Cases marked [client alone]: the clients alone on the transport, in a fresh process; "+
				"the server on package net in a second process.")
		default:
			parts = append(parts, "Unmarked cases: server and clients in one fresh process, each on the transport under test "+
				"(a hub per side), so allocs and CPU per RPC count both sides.")
		}
	}
	return strings.Join(parts, " ")
}

// spread returns half the range of f over ms relative to its median, as
// "±N%"; "–" for fewer than two rounds.
func spread(ms []metrics, f func(metrics) float64) string {
	if len(ms) < 2 {
		return "–"
	}
	lo, hi := f(ms[0]), f(ms[0])
	for _, m := range ms[1:] {
		lo, hi = min(lo, f(m)), max(hi, f(m))
	}
	med := median(ms, f)
	if med == 0 {
		return "–"
	}
	return fmt.Sprintf("±%.0f%%", 50*(hi-lo)/med)
}

// writeRatios writes, for every transport other than std, its figures over
// std's: the ratio of the medians and, in brackets, the range of the
// rounds' own ratios (round i of one against round i of the other, which
// ran next to each other): RPCs/s, CPU per RPC of the process holding the
// transport, and the peer's CPU per RPC. Nothing without std.
func writeRatios(w io.Writer, cfg config, results []caseResult) {
	base := slices.Index(cfg.transports, transportStd)
	if base < 0 || len(cfg.transports) < 2 {
		return
	}
	fmt.Fprintln(w)
	fmt.Fprintln(w, "| case | transport | RPCs/s vs std (rounds) | CPU/RPC vs std (rounds) | peer CPU/RPC vs std | CPU over peer's, vs std (rounds) |")
	fmt.Fprintln(w, "|---|---|--:|--:|--:|--:|")
	for _, cr := range results {
		b := cr.outcomes[base]
		for t, name := range cfg.transports {
			o := cr.outcomes[t]
			if t == base || o.rounds == 0 || b.rounds == 0 {
				continue
			}
			rps := ratioRange(o, b, func(m metrics) float64 { return m.rps })
			cpu := ratioRange(o, b, func(m metrics) float64 { return float64(m.cpuPerRPC) })
			peer, rel := "–", "–"
			if b.med.peerCPUPerRPC > 0 {
				peer = fmt.Sprintf("%.2f", float64(o.med.peerCPUPerRPC)/float64(b.med.peerCPUPerRPC))
				rel = ratioRange(o, b, func(m metrics) float64 {
					if m.peerCPUPerRPC == 0 {
						return 0
					}
					return float64(m.cpuPerRPC) / float64(m.peerCPUPerRPC)
				})
			}
			fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s |\n", cr.c, name, rps, cpu, peer, rel)
		}
	}
	fmt.Fprintln(w, "\nRatios over std in the same run: of the medians, with the range of the rounds' own ratios in brackets (rounds paired in order). "+
		"CPU over peer's: each run's CPU per RPC divided by its peer process's (package net in both runs), so that a round's machine load, "+
		"which moves both processes alike, cancels; then hub's over std's.")
}

// ratioRange returns f's median over o's rounds divided by b's, and the
// range of the round-by-round ratios.
func ratioRange(o, b outcome, f func(metrics) float64) string {
	den := median(b.all, f)
	if den == 0 {
		return "–"
	}
	s := fmt.Sprintf("%.2f", median(o.all, f)/den)
	n := min(len(o.all), len(b.all))
	if n < 2 {
		return s
	}
	lo, hi := 0.0, 0.0
	for i := range n {
		if f(b.all[i]) == 0 {
			return s
		}
		r := f(o.all[i]) / f(b.all[i])
		if i == 0 || r < lo {
			lo = r
		}
		if i == 0 || r > hi {
			hi = r
		}
	}
	return fmt.Sprintf("%s (%.2f–%.2f)", s, lo, hi)
}
