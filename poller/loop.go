package poller

import (
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"time"
)

// The hub's loop is written once, here, for every platform. What it needs
// from the operating system is a poll set, provided by one platform file
// (epoll_linux.go; unsupported.go elsewhere) as type poll with these
// methods, in the manner of the runtime's netpoll.go:
//
//	init(wakeFd int, o options) error
//		Create the poll set with wakeFd in it, edge-triggered for reading;
//		events for wakeFd carry generation 0. For the park design
//		(o.design), also make the poll fd a runtime-poller file (file).
//		Called once, by New, before the hub goroutine starts.
//	add(fd int, gen uint32) error
//		Add fd, edge-triggered for reading (hang-ups and urgent data
//		included) and writing; its events carry (fd, gen), gen never 0.
//		Any goroutine, under hub.regMu. The error names the syscall
//		(*os.SyscallError).
//	del(fd int)
//		Remove fd; errors are ignored (a closed fd leaves the set anyway).
//		Any goroutine, under hub.regMu.
//	wait(timeout int) (n int, err error)
//		Harvest up to o.batch events; timeout in milliseconds, -1 for none,
//		0 never blocks. EINTR returns (0, nil); any other error is
//		persistent, names the syscall, and closes the hub. Hub goroutine
//		only.
//	event(i int) pollEvent
//		The i-th event harvested by the last wait. Hub goroutine only.
//	file() *os.File
//		The poll fd as a runtime-poller file in the park design, nil in
//		the block design. Hub goroutine only.
//	close()
//		Release the poll set. Called once, by shutdown, after the loop has
//		stopped and after shutdown's regMu section.

// pollEvent is one harvested event in the platform-neutral form the loop
// dispatches.
type pollEvent struct {
	fd          int32
	gen         uint32 // 0: the hub's wakeup fd
	read, write bool   // the directions the event makes ready, EPOLLERR aside
	err         bool   // EPOLLERR: see errqueue.go
	exceptional bool   // a hang-up or urgent data: see Registration.Exceptional
}

// loop is the hub goroutine's work until the hub is closing.
func (h *Hub) loop() {
	if h.p.file() != nil {
		h.loopPark()
	} else {
		h.loopBlock()
	}
}

// loopBlock waits in a blocking wait: the hub's thread sleeps in the
// kernel, with a millisecond timeout for the next timer.
func (h *Hub) loopBlock() {
	for !h.closing.Load() {
		var next int64
		h.due, next = h.runTimers(h.due, 0)
		timeout := -1
		if next != 0 {
			// Round up: a timer never fires early.
			timeout = int((next - now() + int64(time.Millisecond) - 1) / int64(time.Millisecond))
			timeout = min(max(timeout, 0), math.MaxInt32)
		}
		h.poll(timeout)
	}
}

// loopPark keeps one syscall.RawConn.Read call on the poll file for as long
// as it can. Read clears the runtime's readiness flag when it starts, then
// calls pass; pass always polls (timeout 0) before it lets the runtime park
// the goroutine, so an edge that arrived before Read started is seen. The
// next timer is the file's read deadline: when it passes, Read returns and
// the loop calls Read again. An error from the runtime poller closes the
// hub with it.
func (h *Hub) loopPark() {
	f := h.p.file()
	raw, err := f.SyscallConn()
	if err != nil {
		h.closeOnPollError(err)
		return
	}
	pass := func(uintptr) bool { return h.pass() }
	for !h.closing.Load() {
		err := raw.Read(pass)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			h.armed = 0
			err = f.SetReadDeadline(time.Time{})
		}
		if err != nil {
			h.closeOnPollError(err)
			return
		}
	}
}

// pass is one wake-up of the park design: run due timers, harvest events
// until the ready list is empty, set the deadline for the next timer, and
// report whether the loop must stop.
func (h *Hub) pass() bool {
	woke := h.obs.unpark() // the pass's first clock reading, if it took one
	for {
		if h.closing.Load() {
			return true
		}
		h.due, _ = h.runTimers(h.due, woke)
		woke = 0 // a later turn of this loop reads the clock afresh
		if n := h.poll(0); n == h.batch {
			continue // the batch was full: more may be ready
		}
		if h.closing.Load() {
			return true
		}
		// Read the next expiry only now: poll may have drained the signal
		// of a timer added after runTimers. A timer added after this read
		// signals again, and that edge ends the park at once.
		next := h.nextTimer()
		if next != h.armed {
			h.armed = next
			var t time.Time
			if next != 0 {
				t = time.Now().Add(time.Duration(next - now()))
			}
			if err := h.p.file().SetReadDeadline(t); err != nil {
				h.closeOnPollError(err)
				return true
			}
		}
		h.obs.park()
		return false
	}
}

// poll runs one wait and dispatches what it returns. Hub goroutine only. It
// returns the number of events harvested.
func (h *Hub) poll(timeout int) int {
	h.iterations.Add(1)
	if timeout != 0 {
		h.obs.park()
	}
	n, err := h.p.wait(timeout)
	h.obs.polled(max(n, 0))
	if err != nil {
		h.closeOnPollError(err)
		return 0
	}
	// ready[i] is the registration of event i: nil for the wakeup fd and
	// for stale events (registration gone, or its fd number reused).
	wake := false
	ready := h.ready[:n]
	h.regMu.Lock()
	for i := range n {
		ev := h.p.event(i)
		if ev.gen == 0 {
			wake = true
			ready[i] = nil
			continue
		}
		ready[i] = h.lookup(ev.fd, ev.gen)
	}
	h.regMu.Unlock()
	delivered := 0
	for i, r := range ready {
		if r != nil {
			if read, write := r.readiness(h.p.event(i)); read || write {
				r.deliver(read, write)
			}
			delivered++
		}
	}
	clear(ready)
	h.events.Add(uint64(delivered))
	if wake {
		h.wake.Drain()
		h.runQueue()
	}
	return n
}

// closeOnPollError closes the hub with err, a persistent failure of its
// poll set or of the runtime poller: every waiter learns why. Hub goroutine
// only; the loop stops when it next looks at closing.
func (h *Hub) closeOnPollError(err error) {
	h.closeWith(fmt.Errorf("poller: hub closed: %w: %w", net.ErrClosed, err))
}
