// Command hubio-tracestat summarises the execution traces hubio-bench (and
// hubio-echo) write with -trace: for each kind of goroutine in a gRPC echo
// run (the callers, the server's handlers, the two conns' readers, grpc-go's
// loopy writers and the hubs; in a hubio-echo run its clients, its echo
// goroutines and gnet's event loops), the time spent running, runnable and waiting, how often it was
// woken and how long a woken goroutine waited for a P, how often it ran and
// how often a run started on a different P than its previous one (a
// migration); and the share of P time left idle.
//
// It is how docs/performance.md compares the hub's scheduling with package
// net's: a hub conn's reader is woken by the hub goroutine instead of the
// runtime poller, and this shows what that changes.
//
// Usage:
//
//	hubio-bench -modes stream -payloads 64 -conc 128 -transports std,hub -rounds 4 -trace DIR
//	hubio-tracestat DIR/*.trace
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/exp/trace"
)

func main() {
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: hubio-tracestat TRACE...")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() == 0 {
		flag.Usage()
		os.Exit(2)
	}
	for _, path := range flag.Args() {
		s, err := summarise(path)
		if err != nil {
			fmt.Fprintf(os.Stderr, "hubio-tracestat: %s: %v\n", path, err)
			os.Exit(1)
		}
		s.print(os.Stdout, path)
	}
}

// roles, in the order a goroutine's stack is matched against them: the
// first whose marker appears in any frame names the goroutine.
var roles = []struct{ name, marker string }{
	{"hub", "poller.(*Hub).run"},
	{"client reader", "(*http2Client).reader"},
	{"server reader", "(*http2Server).HandleStreams"},
	{"loopy writer", "(*loopyWriter).run"},
	{"handler", "(*Server).processRPC"},
	{"caller", "main.(*caller)."},
	// hubio-echo's: its server's conn goroutines, its clients, gnet's
	// event loops.
	{"echo server", "main.echo"},
	{"echo client", "main.pingPong"},
	{"gnet loop", "gnet/v2.(*eventloop)."},
}

// roleOf names the goroutine a stack belongs to, or "" when no role's
// marker is in it.
func roleOf(s trace.Stack) string {
	for f := range s.Frames() {
		for _, r := range roles {
			if strings.Contains(f.Func, r.marker) {
				return r.name
			}
		}
	}
	return ""
}

// goroutine is one goroutine's state and accumulated figures.
type goroutine struct {
	role   string
	state  trace.GoState
	since  trace.Time
	time   [trace.GoSyscall + 1]time.Duration // by state
	wakes  int                                // Waiting -> Runnable
	wokeAt trace.Time                         // last wake, 0 once it ran
	wakeRL []time.Duration                    // wake -> running
	runs   int                                // -> Running
	migr   int                                // runs on another P than the last
	lastP  trace.ProcID
}

// summary is one trace's figures.
type summary struct {
	span     time.Duration
	procs    int
	procIdle time.Duration
	byRole   map[string]*goroutine // per role, the sum over its goroutines
	count    map[string]int        // goroutines per role
}

func summarise(path string) (*summary, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	r, err := trace.NewReader(f)
	if err != nil {
		return nil, err
	}
	gs := map[trace.GoID]*goroutine{}
	idleSince := map[trace.ProcID]trace.Time{}
	seenProcs := map[trace.ProcID]bool{}
	var first, last trace.Time
	var procIdle time.Duration
	for {
		ev, err := r.ReadEvent()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, err
		}
		t := ev.Time()
		if first == 0 {
			first = t
		}
		last = t
		if ev.Kind() != trace.EventStateTransition {
			continue
		}
		st := ev.StateTransition()
		switch st.Resource.Kind {
		case trace.ResourceProc:
			id := st.Resource.Proc()
			seenProcs[id] = true
			_, to := st.Proc()
			switch to {
			case trace.ProcIdle:
				idleSince[id] = t
			case trace.ProcRunning:
				if s, ok := idleSince[id]; ok {
					procIdle += t.Sub(s)
					delete(idleSince, id)
				}
			}
		case trace.ResourceGoroutine:
			id := st.Resource.Goroutine()
			from, to := st.Goroutine()
			g := gs[id]
			if g == nil {
				g = &goroutine{state: from, since: first}
				gs[id] = g
			}
			if g.role == "" {
				g.role = roleOf(st.Stack)
			}
			if int(from) < len(g.time) {
				g.time[from] += t.Sub(g.since)
			}
			switch {
			case from == trace.GoWaiting && to == trace.GoRunnable:
				g.wakes++
				g.wokeAt = t
			case to == trace.GoRunning:
				if g.wokeAt != 0 {
					g.wakeRL = append(g.wakeRL, t.Sub(g.wokeAt))
					g.wokeAt = 0
				}
				p := ev.Proc()
				if g.runs > 0 && p != g.lastP {
					g.migr++
				}
				g.runs++
				g.lastP = p
			}
			g.state, g.since = to, t
		}
	}
	for _, s := range idleSince {
		procIdle += last.Sub(s)
	}
	s := &summary{
		span:     last.Sub(first),
		procs:    len(seenProcs),
		procIdle: procIdle,
		byRole:   map[string]*goroutine{},
		count:    map[string]int{},
	}
	for _, g := range gs {
		role := g.role
		if role == "" {
			role = "other"
		}
		a := s.byRole[role]
		if a == nil {
			a = &goroutine{}
			s.byRole[role] = a
		}
		s.count[role]++
		for i := range g.time {
			a.time[i] += g.time[i]
		}
		a.wakes += g.wakes
		a.wakeRL = append(a.wakeRL, g.wakeRL...)
		a.runs += g.runs
		a.migr += g.migr
	}
	return s, nil
}

func (s *summary) print(w io.Writer, path string) {
	idle := 0.0
	if s.procs > 0 && s.span > 0 {
		idle = float64(s.procIdle) / float64(s.span) / float64(s.procs)
	}
	fmt.Fprintf(w, "%s: %.2fs traced, %d Ps, %.1f%% of P time idle\n", path, s.span.Seconds(), s.procs, 100*idle)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "role\tgoroutines\trunning\trunnable\twaiting\tsyscall\twakes/s\twake->run p50\tp90\truns/s\tmigrations/run\t")
	names := make([]string, 0, len(s.byRole))
	for _, r := range roles {
		if s.byRole[r.name] != nil {
			names = append(names, r.name)
		}
	}
	if s.byRole["other"] != nil {
		names = append(names, "other")
	}
	sec := s.span.Seconds()
	for _, n := range names {
		a := s.byRole[n]
		slices.Sort(a.wakeRL)
		p50, p90 := quantile(a.wakeRL, 0.5), quantile(a.wakeRL, 0.9)
		migr := 0.0
		if a.runs > 0 {
			migr = float64(a.migr) / float64(a.runs)
		}
		fmt.Fprintf(tw, "%s\t%d\t%.3fs\t%.3fs\t%.3fs\t%.3fs\t%.0f\t%s\t%s\t%.0f\t%.3f\t\n", n, s.count[n],
			a.time[trace.GoRunning].Seconds(), a.time[trace.GoRunnable].Seconds(),
			a.time[trace.GoWaiting].Seconds(), a.time[trace.GoSyscall].Seconds(),
			float64(a.wakes)/sec, round(p50), round(p90), float64(a.runs)/sec, migr)
	}
	tw.Flush()
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func round(d time.Duration) time.Duration {
	if d < time.Microsecond {
		return d.Round(10 * time.Nanosecond)
	}
	return d.Round(100 * time.Nanosecond)
}
