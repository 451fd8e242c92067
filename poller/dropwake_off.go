//go:build !hubio_dropwakeup

package poller

// dropWakeups is false in every ordinary build: the check in
// Registration.deliver is then removed by the compiler. Build with
// -tags hubio_dropwakeup to lose readiness hand-offs on purpose
// (dropwake_on.go), as the soak does to prove it notices.
const dropWakeups = false

func dropThisWakeup() bool { return false }
