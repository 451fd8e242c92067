package poller

// Hooks for this package's tests (package poller_test), compiled only into
// the test binary.

// WaitDesign, Park, Block, WithWaitDesign and WithEventBatch are the
// benchmark switches of hub.go, unexported there.
type WaitDesign = waitDesign

const (
	Park  = park
	Block = block
)

var (
	WithWaitDesign = withWaitDesign
	WithEventBatch = withEventBatch
)

// String returns the design's name as used in test and benchmark names.
func (d waitDesign) String() string {
	if d == block {
		return "block"
	}
	return "park"
}

// DispatchForTest delivers a synthetic event for (fd, gen) on the hub
// goroutine, as if the poll set had returned it, and waits until it has.
func (h *Hub) DispatchForTest(fd int, gen uint32, read, write bool) error {
	done := make(chan struct{})
	if err := h.Schedule(func() {
		h.regMu.Lock()
		r := h.lookup(int32(fd), gen)
		h.regMu.Unlock()
		if r != nil {
			r.deliver(read, write)
		}
		close(done)
	}); err != nil {
		return err
	}
	<-done
	return nil
}

// Gen returns the registration's generation.
func (r *Registration) Gen() uint32 { return r.gen }

// Pending reports whether direction m has a readiness that its next Wait
// would return for at once (left since the last Prepare or Wait). Call it
// from the direction's owner.
func (r *Registration) Pending(m Mode) bool {
	return r.dirs[m].state.Load() == stReady
}

// OptionsForTest returns how h waits and how many events one wait may
// harvest, as its options set them.
func (h *Hub) OptionsForTest() (WaitDesign, int) {
	if h.p.file() == nil {
		return block, h.batch
	}
	return park, h.batch
}
