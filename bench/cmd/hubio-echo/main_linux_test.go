package main

import (
	"bytes"
	"errors"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubio/hubio/testutil"
	"go.uber.org/goleak"
)

// TestMain lets the test binary serve as the benchmark's child process:
// spawn re-executes os.Executable(), which under go test is this binary.
func TestMain(m *testing.M) {
	if j := os.Getenv(childEnv); j != "" {
		os.Exit(childMain(j, os.Stdout))
	}
	// Under -race, every child would otherwise sleep a second at exit.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	// gnet starts a goroutine pool (ants) when its package initialises,
	// once per process; it is not an engine's and never ends.
	testutil.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).purgeStaleWorkers"),
		goleak.IgnoreTopFunction("github.com/panjf2000/ants/v2.(*poolCommon).ticktock"))
}

// TestEveryServerEchoesByteExact runs a short round of every server in this
// process, at payloads that fit one segment and that do not, and checks
// that round trips completed: pingPong fails the run on the first echo
// that differs from its message by a byte.
func TestEveryServerEchoesByteExact(t *testing.T) {
	for _, s := range knownServers {
		for _, p := range []int{8, 64, 4096, 100_000} {
			j := job{Server: s, Conns: 4, Payload: p, Duration: 50 * time.Millisecond}
			res, err := measure(j)
			if err != nil {
				t.Errorf("%s %d B: %v", s, p, err)
				continue
			}
			if res.RoundTrips == 0 || res.Elapsed <= 0 {
				t.Errorf("%s %d B: %d round trips in %v", s, p, res.RoundTrips, res.Elapsed)
			}
		}
	}
}

// TestPingPongCatchesAWrongEcho runs the client against a server that
// changes one byte of the echo, and one that echoes an earlier message.
func TestPingPongCatchesAWrongEcho(t *testing.T) {
	for name, corrupt := range map[string]func(msg, prev []byte){
		"flipped byte":    func(msg, _ []byte) { msg[len(msg)-1] ^= 1 },
		"earlier message": func(msg, prev []byte) { copy(msg, prev) },
	} {
		t.Run(name, func(t *testing.T) {
			srv, cli := net.Pipe()
			done := make(chan struct{})
			go func() {
				defer close(done)
				defer srv.Close()
				msg, prev := make([]byte, 64), make([]byte, 64)
				for i := 0; ; i++ {
					if err := readFull(srv, msg); err != nil {
						return
					}
					cur := bytes.Clone(msg)
					if i == 2 {
						corrupt(msg, prev)
					}
					prev = cur
					if _, err := srv.Write(msg); err != nil {
						return
					}
				}
			}()
			var stop atomic.Bool
			var cnt counter
			err := pingPong(cli, 3, 64, &stop, &cnt)
			cli.Close()
			<-done
			if !errors.Is(err, errMismatch) {
				t.Fatalf("pingPong = %v, want %v", err, errMismatch)
			}
			if n := cnt.n.Load(); n != 2 {
				t.Errorf("%d round trips counted before the wrong echo, want 2", n)
			}
		})
	}
}

// TestRunPrintsATableRowPerServer runs the command for one tiny round of
// every server, each in a child process, and checks the table.
func TestRunPrintsATableRowPerServer(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-conns=2", "-payload=64", "-rounds=2", "-duration=30ms", "-warmup=10ms", "-warmround=false"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if !strings.Contains(out, "64B c2: 2 rounds of 30ms") {
		t.Errorf("no case header")
	}
	for _, s := range knownServers {
		if !strings.Contains(out, "| "+s+" | ") || strings.Contains(out, "| "+s+" | failed |") {
			t.Errorf("no row for %s, or it failed", s)
		}
	}
	if !strings.Contains(out, "| std | ") || !strings.Contains(out, "| 1.00 | 1.00–1.00 | 1.00 | 1.00–1.00 |") {
		t.Errorf("std's ratios to itself are not 1.00")
	}
}

// TestFlagsRejectUnknownServersAndShortPayloads checks the flag checks.
func TestFlagsRejectUnknownServersAndShortPayloads(t *testing.T) {
	for _, args := range [][]string{
		{"-servers=std,tokio"},
		{"-payload=4"},
		{"-conns=0"},
		{"-rounds=0"},
	} {
		var stderr bytes.Buffer
		if code := run(args, &bytes.Buffer{}, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
