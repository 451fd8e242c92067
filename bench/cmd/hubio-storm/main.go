// Command hubio-storm measures what a connection storm does to a gRPC
// server's steady clients, and how fast the storm's own clients fail, with
// the server behind package net, netutil.LimitListener, and hub listeners
// with and without admission (transport.AdmissionPolicy), side by side in
// one run.
//
// Set-up: the server runs in a child process (one per case, the same
// binary with -serve), serving the echo service; this process runs the
// steady clients, gRPC clients with package net's dialer on loopback
// (100 by default, each from its own address 127.0.1.x, one conn each),
// which send a unary RPC every interval and record its latency. After a
// baseline window, a storm process (the same binary with -storm-run; see
// storm.go) opens 5,000 conns at once from one peer, 127.0.0.2, each
// writing the HTTP/2 preface and waiting, up to a deadline, for the
// server's SETTINGS, and holding its conn until the storm window ends. For each case the
// report gives the steady clients' p50 and p99 before and during the storm,
// their ratio, how many storm clients got the server's SETTINGS frame or
// failed and after how long the failed ones failed, and the server's CPU
// time. The storm window is the same length for every case: the storm
// deadline plus half a second, longer only if the storm took longer.
//
//	go run ./cmd/hubio-storm -rounds 3
package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/bench/internal/sysstat"
	"github.com/hubio/hubio/testutil"
)

// options are the command's flags.
type options struct {
	rounds        int
	steady        int
	interval      time.Duration
	storm         int
	stormDeadline time.Duration
	baseline      time.Duration
	limit         int
	perPeer       int
	rate          float64
	burst         int
	cases         string
	serve         string
	stormRun      string
	cpus          string // CPUs for this process and the server ("" = any)
	stormCPUs     string // CPUs for the storm process ("" = any)
}

func main() {
	var o options
	flag.IntVar(&o.rounds, "rounds", 1, "rounds; each runs every case once, in turn")
	flag.IntVar(&o.steady, "steady", 100, "steady clients (at most 250: one address 127.0.1.x each)")
	flag.DurationVar(&o.interval, "interval", 50*time.Millisecond, "each steady client's time between RPCs")
	flag.IntVar(&o.storm, "storm", 5000, "storm clients, all from 127.0.0.2")
	flag.DurationVar(&o.stormDeadline, "storm-deadline", 2*time.Second, "each storm client's deadline for the server's SETTINGS")
	flag.DurationVar(&o.baseline, "baseline", 2*time.Second, "the window measured before the storm")
	flag.IntVar(&o.limit, "limit", 200, "netutil.LimitListener's limit (case limit)")
	flag.IntVar(&o.perPeer, "per-peer", 10, "MaxConnsPerPeer (case peer)")
	flag.Float64Var(&o.rate, "rate", 200, "accept Rate per second (cases rate, pause)")
	flag.IntVar(&o.burst, "burst", 50, "accept Burst (cases rate, pause)")
	flag.StringVar(&o.cases, "cases", "net,limit,hub,peer,rate,pause", "cases to run, comma-separated")
	flag.StringVar(&o.cpus, "cpus", "", "pin this process (the steady clients) and the server to these CPUs, e.g. 0 or 0-3 (Linux)")
	flag.StringVar(&o.stormCPUs, "storm-cpus", "", "pin the storm process to these CPUs, e.g. 1 or 4-7 (Linux): the storm as if from other machines")
	flag.StringVar(&o.serve, "serve", "", "internal: serve this case (the server process)")
	flag.StringVar(&o.stormRun, "storm-run", "", "internal: storm this address (the storm process)")
	flag.Parse()
	pin := o.cpus
	if o.stormRun != "" {
		pin = o.stormCPUs
	}
	if pin != "" {
		if err := pinCPUs(pin); err != nil {
			fmt.Fprintln(os.Stderr, "hubio-storm:", err)
			os.Exit(2)
		}
	}
	if o.serve != "" {
		if err := serve(o.serve, o); err != nil {
			fmt.Fprintln(os.Stderr, "hubio-storm server:", err)
			os.Exit(1)
		}
		return
	}
	if o.stormRun != "" {
		if err := runStorm(o.stormRun, o.storm, o.stormDeadline); err != nil {
			fmt.Fprintln(os.Stderr, "hubio-storm storm:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(o, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "hubio-storm:", err)
		os.Exit(1)
	}
}

// run measures every case o names, o.rounds times, and writes the report.
func run(o options, w io.Writer) error {
	if o.steady < 1 || o.steady > 250 {
		return fmt.Errorf("-steady %d: want 1 to 250", o.steady)
	}
	var run []serverCase
	for _, name := range strings.Split(o.cases, ",") {
		c, ok := caseNamed(strings.TrimSpace(name))
		if !ok {
			return fmt.Errorf("no case %q", name)
		}
		run = append(run, c)
	}
	nofile := sysstat.RaiseFileLimit()
	if need := uint64(o.storm + 4*o.steady + 256); nofile != 0 && nofile < need {
		return fmt.Errorf("RLIMIT_NOFILE is %d after raising it to the hard limit; %d storm clients need about %d", nofile, o.storm, need)
	}
	fmt.Fprintf(w, "hubio-storm: %d steady clients (one RPC each per %v), storm of %d conns from 127.0.0.2 in a process of its own (deadline %v); server in a child process, steady clients here, loopback; GOMAXPROCS %d, RLIMIT_NOFILE %d, load average at start %s\n",
		o.steady, o.interval, o.storm, o.stormDeadline, runtime.GOMAXPROCS(0), nofile, sysstat.LoadAvg())
	if o.cpus != "" || o.stormCPUs != "" {
		fmt.Fprintf(w, "CPUs: steady clients and server %s, storm %s\n", orAny(o.cpus), orAny(o.stormCPUs))
	}
	fmt.Fprintf(w, "settings: LimitListener %d; per-peer limit %d; pacing %g/s burst %d\n\n", o.limit, o.perPeer, o.rate, o.burst)
	var all []result
	for round := range o.rounds {
		for _, c := range run {
			r, err := runCase(o, c)
			if err != nil {
				return fmt.Errorf("case %s: %w", c.name, err)
			}
			r.round = round
			all = append(all, r)
			fmt.Fprintln(w, r.line())
		}
	}
	fmt.Fprintf(w, "\nload average at end %s\n\n", sysstat.LoadAvg())
	report(w, run, all)
	return nil
}

// sample is one steady RPC.
type sample struct {
	at  time.Time
	lat time.Duration
	err bool
}

// result is one case's measurements in one round.
type result struct {
	c                    serverCase
	round                int
	base, during         []time.Duration // steady latencies, sorted
	baseErrs, duringErrs int
	stormOK              int
	fails                []time.Duration // storm clients' time to failure, sorted
	failKinds            map[string]int
	cpuBase, cpuStorm    time.Duration // server CPU in each window
	clientCPU            time.Duration // this process, storm window
	stormCPU             time.Duration // the storm process, in all
	baseWin, stormWin    time.Duration
}

// runCase starts the case's server and measures one baseline and one storm.
func runCase(o options, c serverCase) (result, error) {
	r := result{c: c, failKinds: map[string]int{}}
	cmd := exec.Command(os.Args[0], "-serve", c.name, "-limit", strconv.Itoa(o.limit),
		"-per-peer", strconv.Itoa(o.perPeer), "-rate", fmt.Sprint(o.rate), "-burst", strconv.Itoa(o.burst),
		"-cpus", o.cpus)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return r, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return r, err
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return r, err
	}
	defer func() {
		stdin.Close()
		cmd.Wait()
	}()
	addr, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		return r, fmt.Errorf("reading the server's address: %w", err)
	}
	target := strings.TrimSpace(addr)
	pid := cmd.Process.Pid

	// Steady clients: connect and make a first RPC before measuring.
	stop := make(chan struct{})
	var steadyWG sync.WaitGroup
	samples := make([][]sample, o.steady)
	ready := make(chan error, o.steady)
	for i := range o.steady {
		steadyWG.Add(1)
		go func() {
			defer steadyWG.Done()
			from := net.IPv4(127, 0, 1, byte(i+1))
			cc, err := newClient(target, from)
			if err != nil {
				ready <- err
				return
			}
			defer cc.Close()
			ec := testutil.NewEchoClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			_, err = ec.Unary(ctx, []byte("warm"), grpc.WaitForReady(true))
			cancel()
			ready <- err
			if err != nil {
				return
			}
			// Spread the clients' ticks over the interval.
			time.Sleep(o.interval * time.Duration(i) / time.Duration(o.steady))
			tick := time.NewTicker(o.interval)
			defer tick.Stop()
			payload := make([]byte, 64)
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				start := time.Now()
				ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
				_, err := ec.Unary(ctx, payload)
				cancel()
				samples[i] = append(samples[i], sample{at: start, lat: time.Since(start), err: err != nil})
			}
		}()
	}
	for range o.steady {
		if err := <-ready; err != nil {
			close(stop)
			steadyWG.Wait()
			return r, fmt.Errorf("a steady client: %w", err)
		}
	}
	time.Sleep(500 * time.Millisecond) // let the tickers settle

	t0 := time.Now()
	cpu0 := sysstat.ProcCPU(pid)
	time.Sleep(o.baseline)
	t1 := time.Now()
	cpu1, self1 := sysstat.ProcCPU(pid), sysstat.ProcCPU(os.Getpid())

	// The storm: every client dials at once, from one peer, in a process
	// of its own.
	storm := exec.Command(os.Args[0], "-storm-run", target, "-storm", strconv.Itoa(o.storm),
		"-storm-deadline", o.stormDeadline.String(), "-storm-cpus", o.stormCPUs)
	stormIn, err := storm.StdinPipe()
	if err != nil {
		return r, err
	}
	stormOut, err := storm.StdoutPipe()
	if err != nil {
		return r, err
	}
	storm.Stderr = os.Stderr
	if err := storm.Start(); err != nil {
		return r, err
	}
	sc := bufio.NewScanner(stormOut)
	for sc.Scan() && sc.Text() != "done" {
		var kind string
		var ns int64
		if _, err := fmt.Sscan(sc.Text(), &kind, &ns); err != nil {
			continue
		}
		if kind == "ok" {
			r.stormOK++
			continue
		}
		r.fails = append(r.fails, time.Duration(ns))
		r.failKinds[kind]++
	}
	// Every case's storm window is as long, so that the steady p99s
	// compare: the storm deadline and half a second, or longer if the
	// storm's last client took longer.
	time.Sleep(time.Until(t1.Add(o.stormDeadline + 500*time.Millisecond)))
	t2 := time.Now()
	cpu2, self2 := sysstat.ProcCPU(pid), sysstat.ProcCPU(os.Getpid())
	stormCPU := sysstat.ProcCPU(storm.Process.Pid)
	stormIn.Close() // the storm releases its conns
	storm.Wait()
	close(stop)
	steadyWG.Wait()
	r.stormCPU = stormCPU

	r.baseWin, r.stormWin = t1.Sub(t0), t2.Sub(t1)
	r.cpuBase, r.cpuStorm, r.clientCPU = cpu1-cpu0, cpu2-cpu1, self2-self1
	for _, ss := range samples {
		for _, s := range ss {
			switch {
			case s.at.Before(t0) || !s.at.Before(t2):
			case s.at.Before(t1):
				if s.err {
					r.baseErrs++
				} else {
					r.base = append(r.base, s.lat)
				}
			default:
				if s.err {
					r.duringErrs++
				} else {
					r.during = append(r.during, s.lat)
				}
			}
		}
	}
	slices.Sort(r.base)
	slices.Sort(r.during)
	slices.Sort(r.fails)
	return r, nil
}

// newClient returns a ClientConn to target whose conns come from the local
// address from.
func newClient(target string, from net.IP) (*grpc.ClientConn, error) {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: from}}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}),
	}
	return grpc.NewClient(target, opts...)
}

// orAny names an unpinned CPU list.
func orAny(cpus string) string {
	if cpus == "" {
		return "any"
	}
	return cpus
}

// quantile returns the q-quantile of sorted durations; 0 when empty.
func quantile(d []time.Duration, q float64) time.Duration {
	if len(d) == 0 {
		return 0
	}
	return d[int(q*float64(len(d)-1)+0.5)]
}

// ratio is p99 during the storm over p99 before it.
func (r result) ratio() float64 {
	b := quantile(r.base, 0.99)
	if b == 0 {
		return 0
	}
	return float64(quantile(r.during, 0.99)) / float64(b)
}

// line is the result's one-line summary, printed as each case ends.
func (r result) line() string {
	return fmt.Sprintf("round %d %-6s steady p50/p99 %v/%v -> %v/%v (x%.2f, %d errors), storm ok %d failed %d %v in %v, server CPU %v / %v, storm CPU %v",
		r.round+1, r.c.name, ms(quantile(r.base, 0.5)), ms(quantile(r.base, 0.99)),
		ms(quantile(r.during, 0.5)), ms(quantile(r.during, 0.99)), r.ratio(), r.duringErrs,
		r.stormOK, len(r.fails), r.failKinds, ms(r.stormWin), ms(r.cpuBase), ms(r.cpuStorm), ms(r.stormCPU))
}

// share formats cpu over wall as a percentage of one core.
func share(cpu, wall time.Duration) string {
	if wall <= 0 {
		return "?"
	}
	return fmt.Sprintf("%.0f%%", 100*float64(cpu)/float64(wall))
}

// ms formats d in milliseconds with two decimals.
func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/1e6) }

// report prints the markdown table: per case, the median round (by p99
// ratio) and the ratio's range over rounds.
func report(w io.Writer, run []serverCase, all []result) {
	fmt.Fprintln(w, "| server | steady p50 / p99, no storm | steady p50 / p99, storm | p99 ratio (range) | storm conns served | storm conns failed: time to failure p50 / p99 (how) | server CPU, no storm → storm |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, c := range run {
		var rs []result
		for _, r := range all {
			if r.c.name == c.name {
				rs = append(rs, r)
			}
		}
		sort.Slice(rs, func(i, j int) bool { return rs[i].ratio() < rs[j].ratio() })
		m := rs[len(rs)/2]
		rng := ""
		if len(rs) > 1 {
			rng = fmt.Sprintf(" (%.2f–%.2f)", rs[0].ratio(), rs[len(rs)-1].ratio())
		}
		how := "–"
		if len(m.fails) > 0 {
			var kinds []string
			for k, n := range m.failKinds {
				kinds = append(kinds, fmt.Sprintf("%d %s", n, k))
			}
			slices.Sort(kinds)
			how = fmt.Sprintf("%d: %s / %s (%s)", len(m.fails), ms(quantile(m.fails, 0.5)), ms(quantile(m.fails, 0.99)), strings.Join(kinds, ", "))
		}
		fmt.Fprintf(w, "| %s | %s / %s | %s / %s | %.2f%s | %d | %s | %s → %s |\n", c.desc,
			ms(quantile(m.base, 0.5)), ms(quantile(m.base, 0.99)),
			ms(quantile(m.during, 0.5)), ms(quantile(m.during, 0.99)),
			m.ratio(), rng, m.stormOK, how, share(m.cpuBase, m.baseWin), share(m.cpuStorm, m.stormWin))
	}
}
