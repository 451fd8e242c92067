// Command hubio-echo measures the hand-off that a one-process gRPC case with
// a conn per caller is made of, outside gRPC: N loopback conns in one
// process, each with a client goroutine that writes a small message and
// reads its echo back as fast as it can, against one of these servers:
//
//   - std: package net, a goroutine per conn (Read, then Write);
//   - hub: transport.Listen on a hub (poller.New), the same goroutine per
//     conn; the clients on package net;
//   - hubboth: as hub, with the clients dialling through a hub of their own
//     (a hub per side, as hubio-bench's hub transport has);
//   - hubone: as hubboth, with one hub for both sides;
//   - gnet: gnet v2, multicore, GOMAXPROCS event loops; OnTraffic echoes;
//   - gnet1: gnet v2, one event loop.
//
// The client code (pingPong) is the same for all, and checks every echo
// byte for byte. Every run is a fresh child process (this binary,
// re-executed), which warms up, then measures the round trips and the
// process's CPU time (getrusage) over the measured window. Rounds
// interleave the servers, the order rotating each round; a first,
// unreported round warms the machine. The report gives per server the
// median and range over the rounds of round trips/s, CPU per round trip and
// context switches per round trip, and the median and range of each
// round's ratio to std's run in the same round.
//
// Usage:
//
//	hubio-echo [-conns 16,128,1000] [-payload 64,4096] [-rounds 7]
//	           [-duration 1s] [-warmup 200ms] [-servers std,hub,hubboth,hubone,gnet,gnet1]
//	           [-gomaxprocs N] [-cpuprofile DIR] [-trace DIR]
//
// Linux only (the hub transport is).
package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// childEnv names the environment variable that makes this binary a child:
// its value is a JSON job, and the child writes one JSON result to stdout.
// (An environment variable rather than a flag, so that a test binary can be
// a child too.)
const childEnv = "HUBIO_ECHO_CHILD"

func main() {
	if j := os.Getenv(childEnv); j != "" {
		os.Exit(childMain(j, os.Stdout))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// childMain runs one job and writes its result as JSON to stdout.
func childMain(js string, stdout io.Writer) int {
	var j job
	if err := json.Unmarshal([]byte(js), &j); err != nil {
		fmt.Fprintln(os.Stderr, "hubio-echo child:", err)
		return 2
	}
	res, err := measure(j)
	if err != nil {
		res.Error = err.Error()
	}
	if err := json.NewEncoder(stdout).Encode(res); err != nil {
		return 1
	}
	return 0
}

// config is the parsed command line.
type config struct {
	conns      []int
	payloads   []int
	servers    []string
	rounds     int
	duration   time.Duration
	warmup     time.Duration
	warmRound  bool
	gomaxprocs int
	cpuprofile string
	trace      string
}

// parseFlags parses the command line.
func parseFlags(args []string, stderr io.Writer) (config, error) {
	fs := flag.NewFlagSet("hubio-echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	conns := fs.String("conns", "128", "comma-separated conn counts (one client goroutine per conn)")
	payloads := fs.String("payload", "64", "comma-separated message sizes in bytes (at least 8)")
	servers := fs.String("servers", strings.Join(knownServers, ","), "servers to compare, the first is the reference of the ratios")
	var cfg config
	fs.IntVar(&cfg.rounds, "rounds", 7, "measured rounds per case and server; the median is reported")
	fs.DurationVar(&cfg.duration, "duration", time.Second, "measured time per run")
	fs.DurationVar(&cfg.warmup, "warmup", 200*time.Millisecond, "unmeasured load before each run's measurement, in the same process")
	fs.BoolVar(&cfg.warmRound, "warmround", true, "run one unreported round of every case first")
	fs.IntVar(&cfg.gomaxprocs, "gomaxprocs", 0, "GOMAXPROCS of the children (0: the runtime's default)")
	fs.StringVar(&cfg.cpuprofile, "cpuprofile", "", "directory: each measured run writes a CPU profile of its window there, <case>-<server>-r<round>.pprof")
	fs.StringVar(&cfg.trace, "trace", "", "directory: each measured run writes an execution trace of its window there, <case>-<server>-r<round>.trace")
	if err := fs.Parse(args); err != nil {
		return cfg, err
	}
	if fs.NArg() > 0 {
		return cfg, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var err error
	if cfg.conns, err = ints(*conns, 1); err != nil {
		return cfg, fmt.Errorf("-conns: %v", err)
	}
	if cfg.payloads, err = ints(*payloads, 8); err != nil {
		return cfg, fmt.Errorf("-payload: %v", err)
	}
	for _, s := range strings.Split(*servers, ",") {
		if !slices.Contains(knownServers, s) {
			return cfg, fmt.Errorf("-servers: unknown server %q (known: %s)", s, strings.Join(knownServers, ","))
		}
		cfg.servers = append(cfg.servers, s)
	}
	if cfg.rounds < 1 || cfg.duration <= 0 || cfg.warmup < 0 {
		return cfg, errors.New("-rounds must be at least 1, -duration positive, -warmup not negative")
	}
	return cfg, nil
}

// ints parses a comma-separated list of integers, each at least lo.
func ints(s string, lo int) ([]int, error) {
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, err
		}
		if n < lo {
			return nil, fmt.Errorf("%d is below %d", n, lo)
		}
		out = append(out, n)
	}
	return out, nil
}

// run is the command: it runs every case and writes the report. It returns
// the exit status.
func run(args []string, stdout, stderr io.Writer) int {
	cfg, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "hubio-echo:", err)
		return 2
	}
	for _, dir := range []string{cfg.cpuprofile, cfg.trace} {
		if dir != "" {
			if err := os.MkdirAll(dir, 0o755); err != nil {
				fmt.Fprintln(stderr, "hubio-echo:", err)
				return 1
			}
		}
	}
	failed := false
	for _, p := range cfg.payloads {
		for _, n := range cfg.conns {
			if !runCase(cfg, p, n, stdout, stderr) {
				failed = true
			}
		}
	}
	if failed {
		return 1
	}
	return 0
}

// runCase runs one case (payload, conns): the warm-up round, then
// cfg.rounds rounds of every server, interleaved, and writes its table. It
// reports whether every run succeeded.
func runCase(cfg config, payload, conns int, stdout, stderr io.Writer) bool {
	name := fmt.Sprintf("%dB c%d", payload, conns)
	load0 := loadAvg()
	base := job{Conns: conns, Payload: payload, Warmup: cfg.warmup, Duration: cfg.duration, GOMAXPROCS: cfg.gomaxprocs}
	ok := true
	if cfg.warmRound {
		for _, s := range cfg.servers {
			j := base
			j.Server = s
			if _, err := spawn(j); err != nil {
				fmt.Fprintf(stderr, "hubio-echo: %s %s warm-up: %v\n", name, s, err)
				ok = false
			}
		}
	}
	// res[s][r] is server s's run in round r; a failed run stays zero.
	res := make(map[string][]result, len(cfg.servers))
	for _, s := range cfg.servers {
		res[s] = make([]result, cfg.rounds)
	}
	for r := range cfg.rounds {
		for k := range cfg.servers {
			s := cfg.servers[(r+k)%len(cfg.servers)] // rotate the order each round
			j := base
			j.Server = s
			file := fmt.Sprintf("%s-%s-r%d", strings.ReplaceAll(name, " ", "-"), s, r)
			if cfg.cpuprofile != "" {
				j.CPUProfile = filepath.Join(cfg.cpuprofile, file+".pprof")
			}
			if cfg.trace != "" {
				j.Trace = filepath.Join(cfg.trace, file+".trace")
			}
			out, err := spawn(j)
			if err != nil {
				fmt.Fprintf(stderr, "hubio-echo: %s %s round %d: %v\n", name, s, r, err)
				ok = false
				continue
			}
			res[s][r] = out
		}
		fmt.Fprintf(stderr, "%s: round %d/%d done\n", name, r+1, cfg.rounds)
	}
	report(stdout, cfg, name, load0, loadAvg(), res)
	return ok
}

// spawn runs j in a fresh child process and returns its result.
func spawn(j job) (result, error) {
	exe, err := os.Executable()
	if err != nil {
		return result{}, err
	}
	js, err := json.Marshal(j)
	if err != nil {
		return result{}, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(js))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("child: %v: %s", err, strings.TrimSpace(errb.String()))
	}
	// The result is the last line: gnet logs its start to stdout.
	lines := bytes.Split(bytes.TrimSpace(out.Bytes()), []byte("\n"))
	var res result
	if err := json.Unmarshal(lines[len(lines)-1], &res); err != nil {
		return result{}, fmt.Errorf("child output %q: %v", out.String(), err)
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	return res, nil
}

// loadAvg returns the 1-minute load average, "?" if unknown.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}
