package poller

// Option configures a Hub. The options that exist are switches for this
// package's own tests and benchmarks; New with none gives the hub every
// program should use.
type Option func(*options)

type options struct {
	design  waitDesign
	batch   int
	balance Balance // NewGroup only; see group.go
}

// waitDesign selects how the hub goroutine waits for events; see loop.go.
type waitDesign int

const (
	// park (the default) registers the poll fd with the Go runtime poller,
	// so the hub goroutine parks like any other goroutine and holds no OS
	// thread while idle.
	park waitDesign = iota
	// block makes the hub goroutine block in the platform's wait, holding
	// an OS thread until the runtime hands its P to another thread. It is
	// kept for comparison in benchmarks (docs/poller.md); it is several
	// times slower to wake.
	block
)

// withWaitDesign selects how the hub waits (park by default).
func withWaitDesign(d waitDesign) Option { return func(o *options) { o.design = d } }

// withEventBatch sets how many events one wait may harvest (128 by default).
func withEventBatch(n int) Option {
	return func(o *options) {
		if n > 0 {
			o.batch = n
		}
	}
}
