//go:build linux

package poller

import (
	"errors"
	"math"
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poll is the Linux poll set: an epoll fd in edge-triggered mode.
//
// Event data: EpollEvent.Fd holds the fd and EpollEvent.Pad the generation
// of its Registration (0 for the hub's own wakeup fd), so an event that was
// harvested for a registration which has since gone, and whose fd number
// was reused, is recognised and dropped (as the runtime's taggedPointer).
//
// Ownership: epfd is written once by init; epoll_ctl may be called on it
// from any goroutine (the kernel serialises); only the hub goroutine calls
// epoll_wait, and only it touches events, ready, fs and armed.
type poll struct {
	epfd int
	// file wraps epfd in the Park design: the runtime poller reports when
	// epfd becomes readable (has ready events) and parks the hub meanwhile.
	file   *os.File
	events []unix.EpollEvent
	ready  []*Registration // scratch: registrations of one batch
	fs     []func()        // scratch: timer callbacks of one pass
	armed  int64           // Park: hub-clock deadline set on file, 0 if none
	wakeFd int
}

func (p *poll) init(h *Hub, o options) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	p.epfd = epfd
	p.wakeFd = h.wake.Fd()
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(p.wakeFd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, p.wakeFd, &ev); err != nil {
		unix.Close(epfd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	if o.design == Park {
		if err := unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
			return os.NewSyscallError("fcntl", err)
		}
		// A non-blocking fd handed to os.NewFile joins the runtime poller.
		p.file = os.NewFile(uintptr(epfd), "epoll")
	}
	p.events = make([]unix.EpollEvent, o.batch)
	p.ready = make([]*Registration, 0, o.batch)
	return nil
}

const (
	readEvents  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLERR
	writeEvents = unix.EPOLLOUT | unix.EPOLLHUP | unix.EPOLLERR
)

func (p *poll) add(fd int, gen uint32) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLET,
		Fd:     int32(fd),
		Pad:    int32(gen),
	}
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev)
}

func (p *poll) del(fd int) {
	// Errors are ignored: the fd leaves the set when it is closed anyway.
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

func (p *poll) close() {
	if p.file != nil {
		p.file.Close()
	} else {
		unix.Close(p.epfd)
	}
}

// loop is the hub goroutine.
func (h *Hub) loop() {
	defer close(h.done)
	if h.p.file != nil {
		h.loopPark()
	} else {
		h.loopBlock()
	}
	h.shutdown()
}

// loopBlock waits in a blocking epoll_wait: the hub's thread sleeps in the
// kernel, with a millisecond timeout for the next timer.
func (h *Hub) loopBlock() {
	p := &h.p
	for !h.closing.Load() {
		var next int64
		p.fs, next = h.runTimers(p.fs)
		timeout := -1
		if next != 0 {
			// Round up: a timer never fires early.
			timeout = int((next - now() + int64(time.Millisecond) - 1) / int64(time.Millisecond))
			timeout = min(max(timeout, 0), math.MaxInt32)
		}
		h.poll(timeout)
	}
}

// loopPark keeps one syscall.RawConn.Read call on the epoll file for as long
// as it can. Read clears the runtime's readiness flag when it starts, then
// calls pass; pass always polls epfd (timeout 0) before it lets the runtime
// park the goroutine, so an edge that arrived before Read started is seen.
// The next timer is the file's read deadline: when it passes, Read returns
// and the loop calls Read again.
func (h *Hub) loopPark() {
	p := &h.p
	raw, err := p.file.SyscallConn()
	if err != nil {
		h.loopBlock()
		return
	}
	pass := func(uintptr) bool { return h.pass() }
	for !h.closing.Load() {
		err := raw.Read(pass)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			p.armed = 0
			p.file.SetReadDeadline(time.Time{})
			continue
		}
		if err != nil {
			// The runtime refused the fd; keep serving without it.
			h.loopBlock()
			return
		}
	}
}

// pass is one wake-up of the Park design: run due timers, harvest events
// until the ready list is empty, set the deadline for the next timer, and
// report whether the loop must stop.
func (h *Hub) pass() bool {
	p := &h.p
	h.obs.unpark()
	for {
		if h.closing.Load() {
			return true
		}
		p.fs, _ = h.runTimers(p.fs)
		if n := h.poll(0); n == len(p.events) {
			continue // the batch was full: more may be ready
		}
		if h.closing.Load() {
			return true
		}
		// Read the next expiry only now: poll may have drained the signal
		// of a timer added after runTimers. A timer added after this read
		// signals again, and that edge ends the park at once.
		next := h.nextTimer()
		if next != p.armed {
			p.armed = next
			var t time.Time
			if next != 0 {
				t = time.Now().Add(time.Duration(next - now()))
			}
			p.file.SetReadDeadline(t)
		}
		h.obs.park()
		return false
	}
}

// poll runs one epoll_wait and dispatches what it returns. Hub goroutine
// only. It returns the number of events harvested.
func (h *Hub) poll(timeout int) int {
	p := &h.p
	h.iterations.Add(1)
	if timeout != 0 {
		h.obs.park()
	}
	n, err := p.wait(timeout)
	h.obs.polled(max(n, 0))
	if err != nil {
		return 0 // EINTR; anything else would repeat on the next call
	}
	// ready[i] is the registration of events[i]: nil for the wakeup fd and
	// for stale events (registration gone, or its fd number reused).
	wake := false
	ready := p.ready[:n]
	h.regMu.Lock()
	for i := range n {
		ev := &p.events[i]
		if ev.Pad == 0 && int(ev.Fd) == p.wakeFd {
			wake = true
			ready[i] = nil
			continue
		}
		ready[i] = h.lookup(ev.Fd, uint32(ev.Pad))
	}
	h.regMu.Unlock()
	delivered := 0
	for i, r := range ready {
		if r != nil {
			r.deliver(p.events[i].Events)
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

// wait harvests ready events. A zero timeout cannot block, so it skips the
// runtime's syscall bookkeeping (entersyscall/exitsyscall cost about as
// much as the call itself, and the Park design polls once per wake);
// x/sys has no raw variant, hence the direct call.
func (p *poll) wait(timeout int) (int, error) {
	if timeout != 0 {
		return unix.EpollWait(p.epfd, p.events, timeout)
	}
	n, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd),
		uintptr(unsafe.Pointer(&p.events[0])), uintptr(len(p.events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(n), nil
}

// deliver wakes the directions an epoll event mask makes ready.
func (r *Registration) deliver(events uint32) {
	r.hub.obs.delivering(r, events&readEvents != 0, events&writeEvents != 0)
	if events&readEvents != 0 {
		r.dirs[Read].wake()
	}
	if events&writeEvents != 0 {
		r.dirs[Write].wake()
	}
}

// dispatchForTest delivers a synthetic event as if epoll_wait had returned
// it. Hub goroutine only.
func (h *Hub) dispatchForTest(fd int32, gen uint32, events uint32) {
	h.regMu.Lock()
	r := h.lookup(fd, gen)
	h.regMu.Unlock()
	if r != nil {
		r.deliver(events)
	}
}
