package hubtest

import (
	"os"
	"testing"
	"time"
)

func TestMain(m *testing.M) { VerifyTestMain(m) }

// fakeT records a check's failures instead of failing the test.
type fakeT struct {
	testing.TB
	cleanups []func()
	errors   int
}

func (f *fakeT) Helper()               {}
func (f *fakeT) Cleanup(fn func())     { f.cleanups = append(f.cleanups, fn) }
func (f *fakeT) Errorf(string, ...any) { f.errors++ }

func (f *fakeT) runCleanups() {
	for i := len(f.cleanups) - 1; i >= 0; i-- {
		f.cleanups[i]()
	}
}

func TestCheckReportsWhatATestLeaves(t *testing.T) {
	if OpenFDs() < 0 {
		t.Skip("fds are not counted here")
	}
	t.Run("nothing left", func(t *testing.T) {
		f := &fakeT{TB: t}
		Check(f)
		r, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { <-done }()
		f.Cleanup(func() { r.Close(); close(done) })
		f.runCleanups()
		if f.errors != 0 {
			t.Errorf("Check reported %d leaks of a test that closed everything", f.errors)
		}
	})
	t.Run("a goroutine and an fd left", func(t *testing.T) {
		defer func(d time.Duration) { fdWait = d }(fdWait)
		fdWait = 50 * time.Millisecond
		f := &fakeT{TB: t}
		Check(f)
		r, err := os.Open(os.DevNull)
		if err != nil {
			t.Fatal(err)
		}
		done := make(chan struct{})
		go func() { <-done }()
		f.runCleanups()
		r.Close()
		close(done)
		if f.errors != 2 {
			t.Errorf("Check reported %d leaks, want 2 (a goroutine, an fd)", f.errors)
		}
	})
}

func TestWaitForReportsWhetherTheConditionHeld(t *testing.T) {
	n := 0
	if !WaitFor(10*time.Second, func() bool { n++; return n >= 3 }) {
		t.Error("WaitFor reported false for a condition that came to hold")
	}
	if WaitFor(20*time.Millisecond, func() bool { return false }) {
		t.Error("WaitFor reported true for a condition that never held")
	}
}
