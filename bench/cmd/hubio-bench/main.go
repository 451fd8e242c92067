// Command hubio-bench compares hubio with the standard library and with
// thread-per-socket blocking I/O on a gRPC echo service.
//
// The transports carry the same grpc-go server and client:
//
//   - std: package net on both sides (net.Listen, grpc.NewClient's dialer);
//   - hub: grpcopt on both sides (grpcopt.Listen and grpcopt.ServerOption on
//     the server, grpcopt.DialOption on the client), one hub from
//     poller.New per side, as two processes would have;
//   - hubN (N ≥ 2, or -hubs): hub on a poller.Group of N hubs per side,
//     through grpcopt.Config.Group;
//   - threads: blocking sockets whose reads, writes and accepts each hold an
//     OS thread (package internal/threads), the design hubio rejected.
//
// Every measurement runs in a fresh child process (this binary, re-executed),
// so that OS threads, memory and allocations belong to one transport alone:
// the Go runtime never gives back an OS thread it has started. The rounds
// interleave the transports (std, hub, threads, std, hub, threads, ...) so
// that machine noise hits them alike, and the median of the rounds is
// reported. With -setup both (the default) server and client share the
// child process, so allocations and CPU time per RPC are those of both sides
// together; with -setup server (or client) the child holds only the server
// (the clients) on the transport under test, and a second child the other
// side on package net, and each process's CPU time is reported on its own.
//
// Usage:
//
//	hubio-bench [-quick] [-rounds 5] [-duration 1s] [-warmup 300ms]
//	            [-modes unary,stream] [-payloads 64,16384] [-conc 1,16,128]
//	            [-conns 1] [-transports std,hub,threads] [-hubs 1,2,4]
//	            [-gomaxprocs 2,4,8,16] [-idle N] [-svg bench-results.svg]
//	            [-setup both,server,client] [-alt BINARY] [-cpuprofile DIR] [-trace DIR] [-metrics]
//
// The results table (markdown) and the hubs' events and polls per RPC go
// to stdout, a chart of RPCs/s to the -svg file, one CPU profile per run to
// -cpuprofile, one execution trace per run to -trace, and a progress line to stderr. See README.md for the columns.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/hubio/hubio/bench/internal/sysstat"
)

func main() {
	if job := os.Getenv(childEnv); job != "" {
		os.Exit(childMain(job, os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run is the command: it parses args, runs the benchmark and writes the
// report to stdout. It returns the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hubio-bench:", err)
		return 2
	}
	sysstat.RaiseFileLimit()
	if cfg.idle > 0 {
		err = runIdle(cfg, stdout, stderr)
	} else {
		err = runThroughput(cfg, stdout, stderr)
	}
	if err != nil {
		fmt.Fprintln(stderr, "hubio-bench:", err)
		return 1
	}
	return 0
}

// config is the parsed command line.
type config struct {
	quick      bool
	rounds     int
	duration   time.Duration // measured time per run
	warmup     time.Duration // unmeasured time before it, in the same process
	modes      []string      // "unary", "stream"
	payloads   []int         // bytes per message
	conc       []int         // concurrent callers
	conns      int           // client conns the callers share
	transports []string      // "std", "hub", "threads", "hubN" (after -hubs)
	hubs       []int         // -hubs: group sizes the hub transport runs with
	gomaxprocs []int         // GOMAXPROCS values for the unary cases; none: leave as is
	idle       int           // idle mode: this many idle conns per transport
	svg        string        // chart path; "" for none
	cpuprofile string        // directory for one CPU profile per run; "" for none
	trace      string        // directory for one execution trace per run; "" for none
	metrics    bool          // compare telemetry off and on (see transportHubSDK)
	setups     []string      // setupBoth, setupServer, setupClient (see peer.go)
	alt        string        // another hubio-bench binary, for the transports named NAME@alt
}

// Flag defaults, and what -quick changes them to unless they are given.
const (
	defaultRounds   = 5
	defaultDuration = time.Second
	defaultWarmup   = 300 * time.Millisecond
	quickRounds     = 3
	quickDuration   = 100 * time.Millisecond
	quickWarmup     = 50 * time.Millisecond
)

func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("hubio-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg := config{
		modes:      []string{"unary", "stream"},
		payloads:   []int{64, 16 << 10},
		conc:       []int{1, 16, 128},
		transports: []string{"std", "hub", "threads"},
		setups:     []string{setupBoth},
	}
	fs.BoolVar(&cfg.quick, "quick", false, fmt.Sprintf("short run: -rounds %d -duration %v -warmup %v unless given", quickRounds, quickDuration, quickWarmup))
	fs.IntVar(&cfg.rounds, "rounds", defaultRounds, "rounds per case and transport; the median is reported")
	fs.DurationVar(&cfg.duration, "duration", defaultDuration, "measured time per run")
	fs.DurationVar(&cfg.warmup, "warmup", defaultWarmup, "unmeasured time before each run's measurement")
	fs.Var((*stringList)(&cfg.modes), "modes", "RPC kinds: unary, stream (bidirectional ping-pong)")
	fs.Var((*intList)(&cfg.payloads), "payloads", "message sizes in bytes")
	fs.Var((*intList)(&cfg.conc), "conc", "concurrent callers")
	fs.IntVar(&cfg.conns, "conns", 1, "client conns the callers share, round robin")
	fs.Var((*stringList)(&cfg.transports), "transports", "transports to compare: std, hub, threads, hubN (a group of N hubs per side), hub-shared (one hub for both sides of one process, as grpcopt's defaults have it), hub-paired (one group of GOMAXPROCS hubs for both sides of one process, each conn's two ends on one hub; -setup both only)")
	fs.Var((*intList)(&cfg.hubs), "hubs", "run the hub transport with a group of each of these many hubs per side (1: one hub, poller.New); e.g. 1,2,4")
	fs.Var((*intList)(&cfg.gomaxprocs), "gomaxprocs", "run the unary cases at each of these GOMAXPROCS values (default: the runtime's)")
	fs.IntVar(&cfg.idle, "idle", 0, "idle mode: hold this many idle client conns per transport and report memory, goroutines and threads")
	fs.StringVar(&cfg.svg, "svg", "bench-results.svg", "write an SVG chart of RPCs/s here (not in idle mode); empty for none")
	fs.BoolVar(&cfg.metrics, "metrics", false, "telemetry cost: -transports hub-notel,hub-global,hub-sdk unless given (hub-global: on through the global provider, none installed; hub-sdk: an OpenTelemetry SDK provider with a reader; hub-sdkprod: hub-sdk with telemetry/sdkproducer's producer; hub-notel: no telemetry)")
	fs.Var((*stringList)(&cfg.setups), "setup", "where the transport under test runs: both (server and clients in one process, each on it), "+
		"server (the server alone on it, clients on package net in another process), client (the clients alone on it, a package-net server in another process); a list runs each")
	fs.StringVar(&cfg.alt, "alt", "", "another hubio-bench binary (this bench/ built against another commit's library) that runs the transports named NAME@alt, interleaved with this binary's: -transports std,hub@alt,hub")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "write a CPU profile of each run's measured time into this directory (go tool pprof)")
	fs.StringVar(&cfg.trace, "trace", "", "write an execution trace of each run's measured time into this directory (go tool trace)")
	if err := fs.Parse(args); err != nil {
		return config{}, err
	}
	if fs.NArg() > 0 {
		return config{}, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if cfg.metrics && !given["transports"] {
		cfg.transports = []string{transportHubNoTel, transportHubGlobal, transportHubSDK}
	}
	if cfg.quick {
		if !given["rounds"] {
			cfg.rounds = quickRounds
		}
		if !given["duration"] {
			cfg.duration = quickDuration
		}
		if !given["warmup"] {
			cfg.warmup = quickWarmup
		}
	}
	for _, n := range cfg.hubs {
		if n < 1 {
			return config{}, errors.New("-hubs values must be at least 1")
		}
	}
	cfg.transports = expandHubs(cfg.transports, cfg.hubs)
	return cfg, cfg.check()
}

func (c config) check() error {
	switch {
	case c.rounds < 1:
		return errors.New("-rounds must be at least 1")
	case c.duration <= 0:
		return errors.New("-duration must be positive")
	case c.warmup < 0:
		return errors.New("-warmup must not be negative")
	case c.conns < 1:
		return errors.New("-conns must be at least 1")
	case c.idle < 0:
		return errors.New("-idle must not be negative")
	case c.idle > 0 && c.cpuprofile != "":
		return errors.New("-cpuprofile profiles throughput runs; idle mode has none")
	case c.idle > 0 && c.trace != "":
		return errors.New("-trace traces throughput runs; idle mode has none")
	case len(c.transports) == 0:
		return errors.New("-transports is empty")
	case c.svg != "" && strings.ToLower(filepath.Ext(c.svg)) != ".svg":
		return fmt.Errorf("-svg %q: the chart is SVG; name the file *.svg", c.svg)
	}
	if len(c.setups) == 0 {
		return errors.New("-setup is empty")
	}
	for _, s := range c.setups {
		if _, err := setupSides(s); err != nil {
			return fmt.Errorf("-setup: %w", err)
		}
	}
	for _, m := range c.modes {
		if m != modeUnary && m != modeStream {
			return fmt.Errorf("-modes: unknown mode %q (want unary or stream)", m)
		}
	}
	for _, t := range c.transports {
		if isAlt(t) && c.alt == "" {
			return fmt.Errorf("-transports %s: name the other binary with -alt", t)
		}
		if isAlt(t) && c.idle > 0 {
			return fmt.Errorf("-transports %s: idle mode has no -alt", t)
		}
		if !knownTransport(t) {
			return fmt.Errorf("-transports: unknown transport %q (want std, hub, hubN, threads, hub-sdk, hub-sdk-wlat, hub-sdkprod, hub-global or hub-notel, each optionally with @alt)", t)
		}
	}
	if len(c.conc) == 0 || len(c.payloads) == 0 || len(c.modes) == 0 {
		return errors.New("-modes, -payloads and -conc must not be empty")
	}
	for _, v := range slices.Concat(c.conc, c.gomaxprocs) {
		if v < 1 {
			return errors.New("-conc and -gomaxprocs values must be at least 1")
		}
	}
	return nil
}

// intList is a comma-separated list flag of non-negative integers.
type intList []int

func (l *intList) String() string {
	if l == nil {
		return ""
	}
	s := make([]string, len(*l))
	for i, v := range *l {
		s[i] = strconv.Itoa(v)
	}
	return strings.Join(s, ",")
}

func (l *intList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			return fmt.Errorf("%q is not a non-negative integer", f)
		}
		*l = append(*l, n)
	}
	return nil
}

// stringList is a comma-separated list flag.
type stringList []string

func (l *stringList) String() string {
	if l == nil {
		return ""
	}
	return strings.Join(*l, ",")
}

func (l *stringList) Set(v string) error {
	*l = nil
	for _, f := range strings.Split(v, ",") {
		if f = strings.TrimSpace(f); f != "" {
			*l = append(*l, f)
		}
	}
	return nil
}

// environment describes the machine for the report header.
func environment() string {
	return fmt.Sprintf("%s %s/%s, %d CPUs, GOMAXPROCS %d",
		runtime.Version(), runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.GOMAXPROCS(0))
}
