package hubtest

import (
	"fmt"
	"net"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hubio/hubio/poller"
)

// fdWait bounds how long Check and WaitFDs wait for fds to be closed (a
// conn's close can complete on another goroutine, or in a runtime cleanup).
// Tests of this package shorten it.
var fdWait = 10 * time.Second

// IgnoreDefaultHub is the goleak option that ignores the goroutine of
// poller.Default()'s hub, which lives as long as the process. Its frame
// defaultLoop marks it, also when a test has stopped the default hub and
// Default has started another.
func IgnoreDefaultHub() goleak.Option {
	return goleak.IgnoreAnyFunction("github.com/hubio/hubio/poller.(*Hub).defaultLoop")
}

// VerifyTestMain runs a package's tests and then fails the binary if any
// goroutine is left other than the default hub's. It starts the default hub
// first, so that the goroutines running before the tests (that hub's among
// them) are ignored and nothing else. opts are passed to goleak.
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	poller.Default()
	goleak.VerifyTestMain(m, append([]goleak.Option{goleak.IgnoreCurrent(), IgnoreDefaultHub()}, opts...)...)
}

// Check takes a snapshot of the running goroutines and of the number of
// open fds, and registers a cleanup that fails t if, once the cleanups
// registered after it have run, goroutines outside the snapshot are still
// running (goleak retries for a while; the default hub's is ignored) or
// more fds are open than before (waited for up to 10 s). opts are passed
// to goleak.Find.
//
// Call Check first in a test (or in the helper that makes the test's first
// resource, as NewHub does): cleanups run last-registered first, so its
// check runs after every resource registered later has been closed.
func Check(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	opts = append(opts, goleak.IgnoreCurrent(), IgnoreDefaultHub())
	// The runtime poller opens its fds once per process, on first use:
	// have them exist before the count.
	if l, err := net.Listen("tcp", "127.0.0.1:0"); err == nil {
		l.Close()
	}
	before := OpenFDs()
	t.Cleanup(func() {
		if err := goleak.Find(opts...); err != nil {
			t.Errorf("leak check: goroutines left behind: %v", err)
		}
		if before < 0 {
			return
		}
		if err := waitFDs(before); err != nil {
			t.Errorf("leak check: %v", err)
		}
	})
}

// CountFDs returns the number of fds the process has open, and fails t
// where they cannot be counted (off Linux).
func CountFDs(t testing.TB) int {
	t.Helper()
	n := OpenFDs()
	if n < 0 {
		t.Fatal("cannot count open fds here")
	}
	return n
}

// WaitFDs waits until the process has at most want fds open, and fails t
// if it has not within 10 s.
func WaitFDs(t testing.TB, want int) {
	t.Helper()
	if err := waitFDs(want); err != nil {
		t.Fatal(err)
	}
}

// waitFDs waits until at most want fds are open.
func waitFDs(want int) error {
	var n int
	if !WaitFor(fdWait, func() bool { n = OpenFDs(); return n <= want }) {
		return fmt.Errorf("%d fds open after %v, %d before; open now:%s", n, fdWait, want, describeFDs())
	}
	return nil
}
