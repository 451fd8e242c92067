package poller

// Option configures a Hub. The options that exist are switches for this
// package's own tests and benchmarks; New with none gives the hub every
// program should use.
type Option func(*options)

type options struct {
	design waitDesign
	batch  int
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

// GroupOption configures a Group. Every Option is a GroupOption, which
// NewGroup passes to New for each hub; WithBalance configures the group
// itself, and New does not accept it.
type GroupOption interface {
	applyGroup(*groupOptions)
}

// groupOptions is what NewGroup's options set.
type groupOptions struct {
	balance Balance
	hub     []Option // passed to New for each hub, in order
}

// applyGroup makes an Option a GroupOption that applies to each hub.
func (o Option) applyGroup(g *groupOptions) { g.hub = append(g.hub, o) }
