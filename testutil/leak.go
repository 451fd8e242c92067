package testutil

import (
	"fmt"
	"runtime"
	"sync"
	"testing"

	"go.uber.org/goleak"

	"github.com/hubio/hubio/internal/hubtest"
)

// IgnoreDefaultHub is the goleak option that ignores the goroutine of
// poller.Default()'s hub, which lives as long as the process; for programs
// that call goleak.Find or goleak.VerifyNone themselves. VerifyNoLeaks and
// VerifyTestMain include it.
func IgnoreDefaultHub() goleak.Option { return hubtest.IgnoreDefaultHub() }

// ignored are goroutines that outlive a test by design.
func ignored() []goleak.Option {
	return []goleak.Option{IgnoreDefaultHub()}
}

// VerifyNoLeaks fails t if goroutines other than the default hub's loop
// are still running once the test is over. It does not check at once: it
// registers the check with t.Cleanup, and cleanups run last-in first-out,
// so called first in the test it checks after every cleanup registered
// later (StartEcho's, a hub's) has closed what it owns:
//
//	func TestMyServer(t *testing.T) {
//		testutil.VerifyNoLeaks(t) // first: its check runs last
//		e := testutil.StartEcho(t)
//		// ... use e.Client ...
//	}
//
// `defer testutil.VerifyNoLeaks(t)` works too: when its check runs, it
// first closes the harnesses StartEcho opened on t that are still open
// (their own cleanups, still to come, then do nothing). Other resources
// that t.Cleanup closes are still open at that point, so the failure
// message then says to call VerifyNoLeaks first, without defer. goleak
// retries for a while, so goroutines on their way out are waited for.
func VerifyNoLeaks(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	t.Cleanup(func() {
		t.Helper()
		closed := closeHarnesses(t)
		if err := goleak.Find(append(ignored(), opts...)...); err != nil {
			msg := fmt.Sprintf("testutil.VerifyNoLeaks: %v\n\nIf these goroutines belong to something a t.Cleanup "+
				"closes (a hub, a server), that cleanup had not run yet: call testutil.VerifyNoLeaks(t) first in "+
				"the test, without defer; its check then runs after every cleanup registered later.", err)
			if len(closed) > 0 {
				msg += fmt.Sprintf(" (VerifyNoLeaks closed the echo harnesses still open, started at %v.)", closed)
			}
			t.Error(msg)
		}
	})
}

// harnesses are the echo harnesses StartEcho opened and their tests'
// cleanups have not closed yet, by test, with where each was started.
var harnesses struct {
	mu   sync.Mutex
	open map[testing.TB][]openHarness
}

type openHarness struct {
	e     *Echo
	where string // file:line of the StartEcho call
}

// trackHarness records e as open on t; the returned func forgets it.
func trackHarness(t testing.TB, e *Echo) (forget func()) {
	where := "unknown"
	if _, file, line, ok := runtime.Caller(2); ok {
		where = fmt.Sprintf("%s:%d", file, line)
	}
	harnesses.mu.Lock()
	defer harnesses.mu.Unlock()
	if harnesses.open == nil {
		harnesses.open = map[testing.TB][]openHarness{}
	}
	harnesses.open[t] = append(harnesses.open[t], openHarness{e, where})
	return func() {
		harnesses.mu.Lock()
		defer harnesses.mu.Unlock()
		hs := harnesses.open[t]
		for i, h := range hs {
			if h.e == e {
				hs = append(hs[:i], hs[i+1:]...)
				break
			}
		}
		if len(hs) == 0 {
			delete(harnesses.open, t)
		} else {
			harnesses.open[t] = hs
		}
	}
}

// closeHarnesses closes the harnesses still open on t, newest first, as
// their cleanups would; those cleanups, still to come, report the errors
// (Close returns the same error again). It returns where they started.
func closeHarnesses(t testing.TB) (where []string) {
	harnesses.mu.Lock()
	hs := append([]openHarness(nil), harnesses.open[t]...)
	harnesses.mu.Unlock()
	for i := len(hs) - 1; i >= 0; i-- {
		hs[i].e.Close()
		where = append(where, hs[i].where)
	}
	return where
}

// VerifyTestMain runs the package's tests and then fails the binary if any
// goroutine leaked, ignoring the default hub's loop, which lives as long as
// the process. Call it from
// TestMain:
//
//	func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
func VerifyTestMain(m *testing.M, opts ...goleak.Option) {
	goleak.VerifyTestMain(m, append(ignored(), opts...)...)
}
