package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"

	"github.com/hubio/hubio/bench/internal/sysstat"
)

// childEnv names the environment variable that turns this binary into a
// child: its value is a JSON job, and the child writes one JSON result to
// stdout. (An environment variable rather than a flag, so that a test
// binary can be a child too; see main_test.go.)
const childEnv = "HUBIO_BENCH_CHILD"

// Job kinds.
const (
	kindRPC  = "rpc"  // measure RPCs: measureRPC
	kindIdle = "idle" // serve idle conns: measureIdle

	kindIdleClients = "idle-clients" // hold idle conns for kindIdle: holdIdleClients
	kindPeer        = "peer"         // the other side of a kindRPC job with a Setup: peerMain
)

// RPC modes, as given to -modes.
const (
	modeUnary  = "unary"
	modeStream = "stream"
)

// job is one measurement, run in a fresh child process.
type job struct {
	Kind       string        `json:"kind"`
	Transport  string        `json:"transport"`
	Mode       string        `json:"mode,omitempty"`
	Payload    int           `json:"payload,omitempty"`
	Conc       int           `json:"conc,omitempty"`
	Conns      int           `json:"conns,omitempty"`
	Warmup     time.Duration `json:"warmup,omitempty"`
	Duration   time.Duration `json:"duration,omitempty"`
	GOMAXPROCS int           `json:"gomaxprocs,omitempty"`  // 0: the runtime's default
	Idle       int           `json:"idle,omitempty"`        // idle conns
	Addr       string        `json:"addr,omitempty"`        // server address, for kindIdleClients
	CPUProfile string        `json:"cpu_profile,omitempty"` // write a CPU profile of the measured time here
	Trace      string        `json:"trace,omitempty"`       // write an execution trace of the measured time here
	Setup      string        `json:"setup,omitempty"`       // kindRPC: setupBoth ("" too), setupServer or setupClient
	Role       string        `json:"role,omitempty"`        // kindPeer: roleServer or roleClient
}

// result is what a child measured. RPC jobs fill the first group, idle jobs
// the second.
type result struct {
	RPCs        uint64        `json:"rpcs"`
	Elapsed     time.Duration `json:"elapsed"`
	P50         time.Duration `json:"p50"`
	P99         time.Duration `json:"p99"`
	P999        time.Duration `json:"p999"`
	Mallocs     uint64        `json:"mallocs"`      // heap objects allocated while measuring
	CPU         time.Duration `json:"cpu"`          // user+sys CPU time while measuring
	PeakThreads int           `json:"peak_threads"` // most OS threads seen
	HubEvents   uint64        `json:"hub_events"`   // readiness events the hubs delivered while measuring
	HubPolls    uint64        `json:"hub_polls"`    // epoll_wait calls of the hubs while measuring
	HubEach     []hubCount    `json:"hub_each"`     // per hub (server's, then client's) while measuring
	PeerCPU     time.Duration `json:"peer_cpu"`     // user+sys CPU time of the peer process while measuring (-setup server, client)

	RSSDelta        int64 `json:"rss_delta"`        // VmRSS with the conns minus before, bytes
	GoroutinesDelta int   `json:"goroutines_delta"` // goroutines with the conns minus before
	Threads         int   `json:"threads"`          // OS threads with the conns
	ThreadsDelta    int   `json:"threads_delta"`    // OS threads with the conns minus before
}

// childTimeout bounds a child's life beyond the time its job asks for.
const childTimeout = 2 * time.Minute

// spawn runs j in a child process (exe, or this executable if exe is "")
// and returns its result. A failed child's error carries the end of its
// stderr.
func spawn(ctx context.Context, exe string, j job) (result, error) {
	var err error
	if exe == "" {
		if exe, err = os.Executable(); err != nil {
			return result{}, err
		}
	}
	spec, err := json.Marshal(j)
	if err != nil {
		return result{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, j.Warmup+j.Duration+childTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return result{}, fmt.Errorf("%w: %s", err, lastLines(stderr.String(), 3))
	}
	var r result
	if err := json.Unmarshal(stdout.Bytes(), &r); err != nil {
		return result{}, fmt.Errorf("child result: %w", err)
	}
	return r, nil
}

// lastLines returns the last n non-empty lines of s, joined by " | ".
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// childMain runs the job described by spec and writes its result as JSON
// to stdout (kindIdleClients: holds its conns until stdin ends, and writes
// nothing). It returns the exit status.
func childMain(spec string, stdin io.Reader, stdout, stderr io.Writer) int {
	var j job
	if err := json.Unmarshal([]byte(spec), &j); err != nil {
		fmt.Fprintf(stderr, "hubio-bench child: bad job: %v\n", err)
		return 2
	}
	if j.GOMAXPROCS > 0 {
		runtime.GOMAXPROCS(j.GOMAXPROCS)
	}
	sysstat.RaiseFileLimit()
	var r result
	var err error
	switch j.Kind {
	case kindRPC:
		r, err = measureRPC(j)
	case kindIdle:
		r, err = measureIdle(j)
	case kindPeer:
		if err := peerMain(j, stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "hubio-bench peer (%s): %v\n", j.Role, err)
			return 1
		}
		return 0
	case kindIdleClients:
		if err := holdIdleClients(j, stdin); err != nil {
			fmt.Fprintf(stderr, "hubio-bench idle clients: %v\n", err)
			return 1
		}
		return 0
	default:
		err = fmt.Errorf("unknown job kind %q", j.Kind)
	}
	if err != nil {
		fmt.Fprintf(stderr, "hubio-bench child (%s %s): %v\n", j.Kind, j.Transport, err)
		return 1
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		fmt.Fprintf(stderr, "hubio-bench child: %v\n", err)
		return 1
	}
	return 0
}
