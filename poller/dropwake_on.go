//go:build hubio_dropwakeup

package poller

import (
	"os"
	"strconv"
	"sync/atomic"
)

// dropWakeups is true in builds with -tags hubio_dropwakeup, made to show
// that a soak notices a lost wakeup: Registration.deliver then drops one
// readiness hand-off in every dropEvery (the environment variable
// HUBIO_DROP_WAKEUP_EVERY, 1000 by default), counted across all hubs.
// Never use such a build for anything else.
const dropWakeups = true

// dropEvery is read once, at package initialisation.
var dropEvery = func() uint64 {
	if n, err := strconv.ParseUint(os.Getenv("HUBIO_DROP_WAKEUP_EVERY"), 10, 64); err == nil && n > 0 {
		return n
	}
	return 1000
}()

// delivered counts readiness hand-offs; any hub goroutine adds to it.
var delivered atomic.Uint64

// dropThisWakeup reports whether this hand-off is the one in dropEvery to
// lose.
func dropThisWakeup() bool { return delivered.Add(1)%dropEvery == 0 }
