// Package leakcheck checks, from a test's cleanup, that the test left no
// goroutines and no open file descriptors behind, as grpc-go's
// internal/leakcheck does for goroutines from each test's teardown. It
// depends on goleak only (no grpc), so every package's tests can use it.
//
// Call Check first in a test (or in the helper that makes the test's first
// resource): cleanups run last-registered first, so its check runs after
// every resource registered later has been closed.
package leakcheck

import (
	"fmt"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// fdWait bounds how long Check waits for fds to be closed (a conn's close
// can complete on another goroutine, or in a runtime cleanup). Tests of
// this package shorten it.
var fdWait = 10 * time.Second

// Check takes a snapshot of the running goroutines and of the number of
// open fds, and registers a cleanup that fails t if, once the cleanups
// registered after it have run, goroutines outside the snapshot are still
// running (goleak retries for a while) or more fds are open than before
// (waited for up to 10 s). opts are passed to goleak.Find.
func Check(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	opts = append(opts, goleak.IgnoreCurrent())
	before := OpenFDs()
	t.Cleanup(func() {
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("leakcheck: goroutines left behind: %v", err)
		}
		if before < 0 {
			return
		}
		if err := waitFDs(before); err != nil {
			t.Errorf("leakcheck: %v", err)
		}
	})
}

// waitFDs waits until at most want fds are open.
func waitFDs(want int) error {
	deadline := time.Now().Add(fdWait)
	for {
		n := OpenFDs()
		if n <= want {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d fds open after %v, %d before the test", n, fdWait, want)
		}
		time.Sleep(5 * time.Millisecond) // polling a count the kernel keeps
	}
}
