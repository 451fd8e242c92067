package main

import (
	"bytes"
	"os"
	"path/filepath"
	"runtime/trace"
	"strings"
	"testing"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// TestSummariseCountsWakes traces a ping-pong of two goroutines over
// unbuffered channels: each round wakes the other side once, so the trace
// holds at least that many wakes and runs, and the report prints them.
func TestSummariseCountsWakes(t *testing.T) {
	const rounds = 200
	path := filepath.Join(t.TempDir(), "pingpong.trace")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := trace.Start(f); err != nil {
		t.Fatal(err)
	}
	ping, pong := make(chan int), make(chan int)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for v := range ping {
			pong <- v + 1
		}
	}()
	for i := range rounds {
		ping <- i
		if got := <-pong; got != i+1 {
			t.Errorf("pong %d, want %d", got, i+1)
		}
	}
	close(ping)
	<-done
	trace.Stop()
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	s, err := summarise(path)
	if err != nil {
		t.Fatal(err)
	}
	if s.span <= 0 || s.procs < 1 {
		t.Fatalf("span %v, %d Ps: want a positive span and at least one P", s.span, s.procs)
	}
	other := s.byRole["other"]
	if other == nil {
		t.Fatal("no goroutine summarised")
	}
	// Each round blocks one side on a channel and wakes it; the two
	// goroutines together see at least one wake per round.
	if other.wakes < rounds || other.runs < rounds {
		t.Errorf("wakes %d, runs %d: want at least %d each", other.wakes, other.runs, rounds)
	}
	if other.migr > other.runs {
		t.Errorf("migrations %d above runs %d", other.migr, other.runs)
	}

	var out bytes.Buffer
	s.print(&out, path)
	for _, want := range []string{"P time idle", "other", "migrations/run"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}

func TestSummariseRejectsANonTrace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "not.trace")
	if err := os.WriteFile(path, []byte("not a trace"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := summarise(path); err == nil {
		t.Fatal("summarise of a non-trace file: no error")
	}
}
