package testutil

import (
	"testing"

	"go.uber.org/goleak"
)

// IgnoreDefaultHub is the goleak option that ignores the goroutine of
// poller.Default()'s hub, which lives as long as the process; for programs
// that call goleak.Find or goleak.VerifyNone themselves. VerifyNoLeaks and
// VerifyTestMain include it.
func IgnoreDefaultHub() goleak.Option {
	return goleak.IgnoreAnyFunction("github.com/hubio/hubio/poller.(*Hub).defaultLoop")
}

// ignored are goroutines that outlive a test by design.
func ignored() []goleak.Option {
	return []goleak.Option{IgnoreDefaultHub()}
}

// VerifyNoLeaks fails t if goroutines other than the default hub's loop
// are still running when it is called (goleak retries for a while, so
// goroutines on their way out are waited for). Use it with defer, or in
// t.Cleanup, after closing servers and clients.
func VerifyNoLeaks(t testing.TB, opts ...goleak.Option) {
	t.Helper()
	goleak.VerifyNone(t, append(ignored(), opts...)...)
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
