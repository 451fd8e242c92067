package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// benchCase is one row group of the report: an RPC mode, a message size and
// a number of concurrent callers, at a GOMAXPROCS value (0: the default).
type benchCase struct {
	setup      string // setupBoth, setupServer or setupClient
	mode       string
	payload    int
	conc       int
	gomaxprocs int
}

// String names the case in the table and the chart, e.g. "unary 64B c16"
// or "unary 16KiB c128 P4".
func (c benchCase) String() string {
	s := fmt.Sprintf("%s %s c%d", c.mode, sizeName(c.payload), c.conc)
	if c.gomaxprocs > 0 {
		s += fmt.Sprintf(" P%d", c.gomaxprocs)
	}
	switch c.setup {
	case setupServer:
		s += " [server alone]"
	case setupClient:
		s += " [client alone]"
	}
	return s
}

func sizeName(n int) string {
	if n >= 1<<10 && n%(1<<10) == 0 {
		return fmt.Sprintf("%dKiB", n>>10)
	}
	return fmt.Sprintf("%dB", n)
}

// cases lists the cases cfg asks for: every mode × payload × concurrency;
// with -gomaxprocs, each unary case once per GOMAXPROCS value instead.
func cases(cfg config) []benchCase {
	var cs []benchCase
	for _, setup := range cfg.setups {
		cs = append(cs, casesOf(cfg, setup)...)
	}
	return cs
}

// casesOf lists the cases of one set-up.
func casesOf(cfg config, setup string) []benchCase {
	var cs []benchCase
	for _, m := range cfg.modes {
		procs := []int{0}
		if m == modeUnary && len(cfg.gomaxprocs) > 0 {
			procs = cfg.gomaxprocs
		}
		for _, p := range procs {
			for _, size := range cfg.payloads {
				for _, n := range cfg.conc {
					cs = append(cs, benchCase{setup: setup, mode: m, payload: size, conc: n, gomaxprocs: p})
				}
			}
		}
	}
	return cs
}

// profileName names the CPU profile (ext "pprof") or execution trace
// (ext "trace") of one run, e.g. "unary-64B-c16-hub-r1.pprof".
func profileName(c benchCase, transport string, round int, ext string) string {
	name := strings.NewReplacer(" [", "-", "]", "", " ", "-").Replace(c.String())
	return fmt.Sprintf("%s-%s-r%d.%s", name, transport, round+1, ext)
}

// metrics are the per-RPC figures the report shows, derived from one round's
// result or, as medians, from several.
type metrics struct {
	rps           float64 // RPCs per second
	p50           time.Duration
	p99           time.Duration
	p999          time.Duration
	allocsPerRPC  float64
	cpuPerRPC     time.Duration
	peerCPUPerRPC time.Duration // the peer process's (-setup server, client); 0 without one
	threads       int           // peak OS threads
	hubEvents     float64       // hub readiness events per RPC (hub transport)
	hubPolls      float64       // hub epoll_wait calls per RPC (hub transport)
	hubLoads      []hubLoad     // each hub's load (hub transports), see group.go
}

func metricsOf(r result) metrics {
	n := float64(r.RPCs)
	return metrics{
		rps:           n / r.Elapsed.Seconds(),
		p50:           r.P50,
		p99:           r.P99,
		p999:          r.P999,
		allocsPerRPC:  float64(r.Mallocs) / n,
		cpuPerRPC:     time.Duration(float64(r.CPU) / n),
		peerCPUPerRPC: time.Duration(float64(r.PeerCPU) / n),
		threads:       r.PeakThreads,
		hubEvents:     float64(r.HubEvents) / n,
		hubPolls:      float64(r.HubPolls) / n,
		hubLoads:      hubLoadsOf(r),
	}
}

// medianMetrics takes the median of each figure on its own across rounds.
func medianMetrics(ms []metrics) metrics {
	return metrics{
		rps:           median(ms, func(m metrics) float64 { return m.rps }),
		p50:           time.Duration(median(ms, func(m metrics) float64 { return float64(m.p50) })),
		p99:           time.Duration(median(ms, func(m metrics) float64 { return float64(m.p99) })),
		p999:          time.Duration(median(ms, func(m metrics) float64 { return float64(m.p999) })),
		allocsPerRPC:  median(ms, func(m metrics) float64 { return m.allocsPerRPC }),
		cpuPerRPC:     time.Duration(median(ms, func(m metrics) float64 { return float64(m.cpuPerRPC) })),
		peerCPUPerRPC: time.Duration(median(ms, func(m metrics) float64 { return float64(m.peerCPUPerRPC) })),
		threads:       int(median(ms, func(m metrics) float64 { return float64(m.threads) })),
		hubEvents:     median(ms, func(m metrics) float64 { return m.hubEvents }),
		hubPolls:      median(ms, func(m metrics) float64 { return m.hubPolls }),
		hubLoads:      medianHubLoads(ms),
	}
}

// median returns the median of f over xs (the mean of the middle two for
// an even count); 0 for none.
func median[T any](xs []T, f func(T) float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	v := make([]float64, len(xs))
	for i, x := range xs {
		v[i] = f(x)
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}

// outcome is one transport's figures for one case.
type outcome struct {
	med    metrics
	all    []metrics // each successful round's, in round order
	rounds int       // rounds that succeeded
	err    error     // the first failure, if any round failed
}

// caseResult is one case's outcomes, in cfg.transports order.
type caseResult struct {
	c        benchCase
	outcomes []outcome
}

// runThroughput measures every case, interleaving transports within each
// round, and writes the table to stdout and the chart to cfg.svg.
func runThroughput(cfg config, stdout, stderr io.Writer) error {
	cs := cases(cfg)
	for _, dir := range []string{cfg.cpuprofile, cfg.trace} {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				return err
			}
		}
	}
	prog := newProgress(stderr, len(cs)*cfg.rounds*len(cfg.transports))
	results := make([]caseResult, len(cs))
	for i, c := range cs {
		perTransport := make([][]metrics, len(cfg.transports))
		errs := make([]error, len(cfg.transports))
		for round := range cfg.rounds {
			for t, name := range cfg.transports {
				prog.step(fmt.Sprintf("%s: %s, round %d/%d", c, name, round+1, cfg.rounds))
				j := job{
					Kind: kindRPC, Transport: baseTransport(name), Mode: c.mode, Payload: c.payload,
					Conc: c.conc, Conns: cfg.conns, Warmup: cfg.warmup, Duration: cfg.duration,
					GOMAXPROCS: c.gomaxprocs, Setup: c.setup,
				}
				if cfg.cpuprofile != "" {
					j.CPUProfile = filepath.Join(cfg.cpuprofile, profileName(c, name, round, "pprof"))
				}
				if cfg.trace != "" {
					j.Trace = filepath.Join(cfg.trace, profileName(c, name, round, "trace"))
				}
				exe := ""
				if isAlt(name) {
					exe = cfg.alt
				}
				r, err := spawn(context.Background(), exe, j)
				if err != nil {
					// A failed run's profile and trace are partial, if there are any.
					for _, f := range []string{j.CPUProfile, j.Trace} {
						if f != "" {
							os.Remove(f)
						}
					}
					if errs[t] == nil {
						errs[t] = err
					}
					continue
				}
				perTransport[t] = append(perTransport[t], metricsOf(r))
			}
		}
		results[i] = caseResult{c: c, outcomes: make([]outcome, len(cfg.transports))}
		for t := range cfg.transports {
			results[i].outcomes[t] = outcome{
				med:    medianMetrics(perTransport[t]),
				all:    perTransport[t],
				rounds: len(perTransport[t]),
				err:    errs[t],
			}
		}
	}
	prog.done()
	writeTable(stdout, cfg, results)
	if cfg.svg != "" {
		if err := writeChart(cfg.svg, cfg, results); err != nil {
			return fmt.Errorf("chart: %w", err)
		}
		fmt.Fprintf(stderr, "chart written to %s\n", cfg.svg)
	}
	return nil
}

// progress is the progress line on stderr: rewritten in place on a
// terminal, one line per step otherwise.
type progress struct {
	w      io.Writer
	tty    bool
	total  int
	n      int
	start  time.Time
	maxLen int
}

func newProgress(w io.Writer, total int) *progress {
	tty := false
	if f, ok := w.(*os.File); ok {
		if st, err := f.Stat(); err == nil {
			tty = st.Mode()&os.ModeCharDevice != 0
		}
	}
	return &progress{w: w, tty: tty, total: total, start: time.Now()}
}

// step announces the next run.
func (p *progress) step(what string) {
	p.n++
	line := fmt.Sprintf("[%d/%d %s] %s", p.n, p.total, time.Since(p.start).Round(time.Second), what)
	if !p.tty {
		fmt.Fprintln(p.w, line)
		return
	}
	pad := max(0, p.maxLen-len(line))
	p.maxLen = max(p.maxLen, len(line))
	fmt.Fprintf(p.w, "\r%s%*s", line, pad, "")
}

// done ends the progress line.
func (p *progress) done() {
	line := fmt.Sprintf("done: %d runs in %s", p.n, time.Since(p.start).Round(time.Second))
	if p.tty {
		fmt.Fprintf(p.w, "\r%s%*s\n", line, max(0, p.maxLen-len(line)), "")
		return
	}
	fmt.Fprintln(p.w, line)
}
