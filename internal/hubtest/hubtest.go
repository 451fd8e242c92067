// Package hubtest is the test support that every hubio package's tests
// share, as grpc-go's internal/grpctest serves its packages: a leak check
// for goroutines and fds, run per test (Check) and per test binary
// (VerifyTestMain), a hub closed at cleanup whose test is leak-checked
// (NewHub) or not (NewHubUnchecked), waits on conditions (WaitFor,
// Eventually), a connected pair of hub conns (ConnPair) and traffic
// through it (Pump), and a Multipath TCP pair on loopback, or a skip where
// the kernel has none (MPTCPPair).
//
// It imports poller and transport, so only external test packages
// (package x_test) can use it from those packages' own tests. Its exported
// counterparts for users are in package testutil, which calls it.
package hubtest

import (
	"testing"
	"time"

	"github.com/hubio/hubio/poller"
)

// NewHub returns a new hub, closed at cleanup (Close's error is the test's
// business where it closes the hub itself). It first starts the test's
// leak check (Check), which runs once the cleanups registered after it
// have: a test's first hub is its first resource.
func NewHub(t testing.TB, opts ...poller.Option) *poller.Hub {
	t.Helper()
	Check(t)
	h, err := poller.New(opts...)
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}

// NewHubUnchecked returns a new hub, closed at cleanup, without starting a
// leak check: for tests whose hub is not their first resource (their
// check, if any, is a Check call of their own). The test fails if Close
// returns an error, as it does for a hub that stopped on its own; such a
// test must not close the hub itself.
func NewHubUnchecked(t testing.TB, opts ...poller.Option) *poller.Hub {
	t.Helper()
	h, err := poller.New(opts...)
	if err != nil {
		t.Fatalf("poller.New: %v", err)
	}
	t.Cleanup(func() {
		if err := h.Close(); err != nil {
			t.Errorf("closing the hub: %v", err)
		}
	})
	return h
}

// WaitFor polls cond every few milliseconds until it holds or d has
// passed, and reports whether it held (it is tried once more at the end).
func WaitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return cond()
		}
		time.Sleep(2 * time.Millisecond) // polling a condition, not synchronising
	}
	return true
}

// Eventually waits as WaitFor does and fails t if cond does not hold
// within d; what names the condition in the failure.
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if !WaitFor(d, cond) {
		t.Fatalf("timed out after %v waiting for %s", d, what)
	}
}
