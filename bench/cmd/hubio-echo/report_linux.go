package main

import (
	"fmt"
	"io"
	"slices"
)

// report writes one case's table: per server, the median and range over
// the rounds of round trips/s, CPU per round trip and context switches per
// round trip, and the median and range of the per-round ratios to the first
// server's run of the same round (RT/s and CPU/RT). Failed runs (zero
// round trips) are left out.
func report(w io.Writer, cfg config, name, load0, load1 string, res map[string][]result) {
	gmp := "default"
	for _, rs := range res {
		for _, r := range rs {
			if r.RoundTrips > 0 {
				gmp = fmt.Sprint(r.GOMAXPROCS)
			}
		}
	}
	ref := cfg.servers[0]
	fmt.Fprintf(w, "\n%s: %d rounds of %v (+%v warm-up), GOMAXPROCS %s, load %s → %s\n\n",
		name, cfg.rounds, cfg.duration, cfg.warmup, gmp, load0, load1)
	fmt.Fprintf(w, "| server | RT/s | range | CPU/RT µs | range | ctx sw/RT | RT/s ÷ %s | range | CPU/RT ÷ %s | range |\n", ref, ref)
	fmt.Fprintln(w, "|---|--:|--:|--:|--:|--:|--:|--:|--:|--:|")
	for _, s := range cfg.servers {
		var rts, cpu, ctx, rr, cr []float64
		for i, r := range res[s] {
			if r.RoundTrips == 0 {
				continue
			}
			rts = append(rts, r.perSec())
			cpu = append(cpu, r.cpuPerRT())
			ctx = append(ctx, r.ctxPerRT())
			if b := res[ref][i]; b.RoundTrips > 0 {
				rr = append(rr, r.perSec()/b.perSec())
				cr = append(cr, r.cpuPerRT()/b.cpuPerRT())
			}
		}
		if len(rts) == 0 {
			fmt.Fprintf(w, "| %s | failed |\n", s)
			continue
		}
		fmt.Fprintf(w, "| %s | %.0f | %s | %.2f | %s | %.2f | %.2f | %s | %.2f | %s |\n",
			s, med(rts), rng(rts, "%.0f"), med(cpu), rng(cpu, "%.2f"), med(ctx),
			med(rr), rng(rr, "%.2f"), med(cr), rng(cr, "%.2f"))
	}
}

// med returns the median of xs (the mean of the middle two for an even
// count); xs is not modified.
func med(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// rng formats the minimum and maximum of xs.
func rng(xs []float64, f string) string {
	if len(xs) == 0 {
		return "–"
	}
	return fmt.Sprintf(f+"–"+f, slices.Min(xs), slices.Max(xs))
}
