package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hubio/hubio/testutil"
)

// TestMain lets the test binary serve as the benchmark's child process:
// spawn re-executes os.Executable(), which under go test is this binary.
func TestMain(m *testing.M) {
	if job := os.Getenv(childEnv); job != "" {
		os.Exit(childMain(job, os.Stdin, os.Stdout, os.Stderr))
	}
	// Under -race, every child would otherwise sleep a second at exit
	// (GORACE's atexit_sleep_ms); a race in a child still fails its run.
	os.Setenv("GORACE", strings.TrimSpace(os.Getenv("GORACE")+" atexit_sleep_ms=0"))
	testutil.VerifyTestMain(m)
}

func TestQuickRunPrintsATableRowPerCaseAndTransportAndWritesAChart(t *testing.T) {
	svg := filepath.Join(t.TempDir(), "results.svg")
	var stdout, stderr bytes.Buffer
	// A subset of -quick: both modes, one payload, two concurrencies.
	args := []string{"-quick", "-rounds=1", "-payloads=64", "-conc=1,4", "-svg=" + svg}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if !strings.Contains(out, "| case | transport | RPCs/s | ± | p50 | p99 | p99.9 | allocs/RPC | CPU/RPC | peer CPU/RPC | threads | hub/std | hub/threads |") {
		t.Errorf("no table header in the output")
	}
	if strings.Contains(out, "failed") {
		t.Errorf("a run failed")
	}
	for _, c := range []string{"unary 64B c1", "unary 64B c4", "stream 64B c1", "stream 64B c4"} {
		if !strings.Contains(out, "| "+c+" | std |") {
			t.Errorf("no row for %s", c)
		}
	}
	for _, tr := range []string{"|  | hub |", "|  | threads |"} {
		if n := strings.Count(out, tr); n != 4 {
			t.Errorf("%d rows contain %q, want 4", n, tr)
		}
	}
	b, err := os.ReadFile(svg)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte("<svg")) {
		t.Errorf("%s is not an SVG file", svg)
	}
	if !strings.Contains(stderr.String(), "done:") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}

func TestGOMAXPROCSSweepRunsTheUnaryCaseAtEachValue(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-rounds=1", "-modes=unary", "-payloads=64", "-conc=2", "-gomaxprocs=1,2", "-transports=std,hub", "-svg="}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	for _, c := range []string{"| unary 64B c2 P1 | std |", "| unary 64B c2 P2 | std |"} {
		if !strings.Contains(stdout.String(), c) {
			t.Errorf("no row %q in:\n%s", c, stdout.String())
		}
	}
}

func TestProfileAndTraceAreWrittenPerRunAndHubCostIsReported(t *testing.T) {
	profiles, traces := t.TempDir(), t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-rounds=1", "-modes=unary", "-payloads=64", "-conc=2", "-transports=std,hub", "-svg=",
		"-cpuprofile=" + profiles, "-trace=" + traces}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	for _, tr := range []string{"std", "hub"} {
		name := "unary-64B-c2-" + tr + "-r1"
		b, err := os.ReadFile(filepath.Join(profiles, name+".pprof"))
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 2 || b[0] != 0x1f || b[1] != 0x8b { // pprof files are gzipped
			t.Errorf("%s.pprof is not a gzipped profile (%d bytes)", name, len(b))
		}
		if b, err = os.ReadFile(filepath.Join(traces, name+".trace")); err != nil {
			t.Fatal(err)
		}
		// An execution trace starts with its header, "go 1.NN trace".
		if !bytes.HasPrefix(b, []byte("go 1.")) {
			t.Errorf("%s.trace is not an execution trace (%d bytes, starts %q)", name, len(b), b[:min(len(b), 16)])
		}
	}
	out := stdout.String()
	if !strings.Contains(out, "| case | transport | hub events/RPC | hub polls/RPC | events/poll |") ||
		!strings.Contains(out, "| unary 64B c2 | hub | ") {
		t.Errorf("no hub cost table with a row for the case in:\n%s", out)
	}
}

func TestSplitSetUpsRunTheOtherSideInAPeerProcessAndReportItsCPU(t *testing.T) {
	profiles := t.TempDir()
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-rounds=2", "-modes=unary,stream", "-payloads=64", "-conc=3", "-conns=2",
		"-transports=std,hub", "-setup=both,server,client", "-svg=", "-cpuprofile=" + profiles}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if strings.Contains(out, "failed") {
		t.Errorf("a run failed")
	}
	for _, c := range []string{"unary 64B c3", "stream 64B c3 [server alone]", "unary 64B c3 [client alone]"} {
		row := rowOf(out, "| "+c+" | std |")
		if row == "" {
			t.Errorf("no std row for %s", c)
			continue
		}
		// Split set-ups have a peer process, and only they: its CPU per
		// RPC is a duration, "–" otherwise.
		cells := strings.Split(row, "|")
		peer := strings.TrimSpace(cells[10])
		if split := strings.Contains(c, "alone"); split == (peer == "–") {
			t.Errorf("%s: peer CPU/RPC cell %q", c, peer)
		}
		if !strings.Contains(out, "| "+c+" | hub | ") {
			t.Errorf("no ratio row for %s hub", c)
		}
	}
	// The split set-ups profile both processes of every run.
	for _, name := range []string{"unary-64B-c3-server-alone-hub-r2", "unary-64B-c3-server-alone-hub-r2-peer", "stream-64B-c3-client-alone-std-r1-peer"} {
		if _, err := os.Stat(filepath.Join(profiles, name+".pprof")); err != nil {
			t.Error(err)
		}
	}
	// Each hub's load names only the side on the hub.
	if !strings.Contains(out, "| unary 64B c3 [server alone] | hub | server |") || strings.Contains(out, "| unary 64B c3 [server alone] | hub | client |") {
		t.Errorf("server-alone hub load rows wrong")
	}
}

func TestAltBinaryRunsTheTransportsMarkedAlt(t *testing.T) {
	// The test binary is a child too (TestMain), so it stands in for a
	// hubio-bench built from another commit.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-rounds=1", "-modes=unary", "-payloads=64", "-conc=2", "-transports=std,hub@alt,hub", "-alt=" + exe, "-svg="}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	out := stdout.String()
	if strings.Contains(out, "failed") || !strings.Contains(out, "|  | hub@alt | ") || !strings.Contains(out, "| unary 64B c2 | hub@alt | ") {
		t.Errorf("no hub@alt rows in:\n%s", out)
	}
	args = []string{"-quick", "-rounds=1", "-modes=unary", "-payloads=64", "-conc=2", "-transports=std,hub@alt", "-alt=" + filepath.Join(t.TempDir(), "missing"), "-svg="}
	stdout.Reset()
	if code := run(args, &stdout, &stderr); code != 0 || !strings.Contains(stdout.String(), "| hub@alt | failed:") {
		t.Errorf("a missing -alt binary: code %d, output:\n%s", code, stdout.String())
	}
}

// rowOf returns the line of out that starts with prefix, or "".
func rowOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix) {
			return l
		}
	}
	return ""
}

func TestIdleModePrintsARowPerTransport(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-idle=20", "-rounds=1"}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if strings.Contains(out, "failed") {
		t.Errorf("a run failed")
	}
	for _, tr := range []string{"| std | 20 |", "| hub | 20 |", "| threads | 20 |"} {
		if !strings.Contains(out, tr) {
			t.Errorf("no row starting %q", tr)
		}
	}
}

func TestBadFlagsAreRefused(t *testing.T) {
	for _, args := range [][]string{
		{"-transports=std,carrier-pigeon"},
		{"-modes=oneway"},
		{"-conc=0"},
		{"-rounds=0"},
		{"-payloads=x"},
		{"-idle=10", "-cpuprofile=" + t.TempDir()},
		{"-idle=10", "-trace=" + t.TempDir()},
		{"stray"},
		{"-svg=chart.png"},
		{"-setup=elsewhere"},
		{"-setup="},
		{"-transports=std,hub@alt"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(args, &stdout, &stderr); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
}
