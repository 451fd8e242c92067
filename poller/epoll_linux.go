//go:build linux

package poller

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// poll is the Linux poll set: an epoll fd in edge-triggered mode. It meets
// the contract stated in loop.go.
//
// Event data: EpollEvent.Fd holds the fd and EpollEvent.Pad the generation
// of its Registration (0 for the hub's own wakeup fd), so an event that was
// harvested for a registration which has since gone, and whose fd number
// was reused, is recognised and dropped (as the runtime's taggedPointer).
//
// Ownership: epfd and f are written once by init; epoll_ctl may be called
// on epfd from any goroutine (the kernel serialises); only the hub
// goroutine calls epoll_wait and touches events.
type poll struct {
	epfd int
	// f wraps epfd in the park design: the runtime poller reports when
	// epfd becomes readable (has ready events) and parks the hub meanwhile.
	f      *os.File
	events []unix.EpollEvent
}

func (p *poll) init(wakeFd int, o options) error {
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return os.NewSyscallError("epoll_create1", err)
	}
	p.epfd = epfd
	ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLET, Fd: int32(wakeFd)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wakeFd, &ev); err != nil {
		unix.Close(epfd)
		return os.NewSyscallError("epoll_ctl", err)
	}
	if o.design == park {
		if err := unix.SetNonblock(epfd, true); err != nil {
			unix.Close(epfd)
			return os.NewSyscallError("fcntl", err)
		}
		// A non-blocking fd handed to os.NewFile joins the runtime poller.
		p.f = os.NewFile(uintptr(epfd), "epoll")
	}
	p.events = make([]unix.EpollEvent, o.batch)
	return nil
}

const (
	readEvents  = unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLHUP | unix.EPOLLPRI
	writeEvents = unix.EPOLLOUT | unix.EPOLLHUP
)

func (p *poll) add(fd int, gen uint32) error {
	ev := unix.EpollEvent{
		Events: unix.EPOLLIN | unix.EPOLLOUT | unix.EPOLLRDHUP | unix.EPOLLPRI | unix.EPOLLET,
		Fd:     int32(fd),
		Pad:    int32(gen),
	}
	if err := unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &ev); err != nil {
		return os.NewSyscallError("epoll_ctl", err)
	}
	return nil
}

func (p *poll) del(fd int) {
	unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// wait harvests ready events. A zero timeout cannot block, so it skips the
// runtime's syscall bookkeeping (entersyscall/exitsyscall cost about as
// much as the call itself, and the park design polls once per wake);
// x/sys has no raw variant, hence the direct call.
func (p *poll) wait(timeout int) (int, error) {
	var n int
	var err error
	if timeout != 0 {
		n, err = unix.EpollWait(p.epfd, p.events, timeout)
	} else {
		r, _, e := unix.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(p.epfd),
			uintptr(unsafe.Pointer(unsafe.SliceData(p.events))), uintptr(len(p.events)), 0, 0, 0)
		n = int(r)
		if e != 0 {
			err = e
		}
	}
	switch err {
	case nil:
		return n, nil
	case unix.EINTR:
		return 0, nil
	}
	return 0, os.NewSyscallError("epoll_wait", err)
}

func (p *poll) event(i int) pollEvent {
	ev := &p.events[i]
	return pollEvent{
		fd:          ev.Fd,
		gen:         uint32(ev.Pad),
		read:        ev.Events&readEvents != 0,
		write:       ev.Events&writeEvents != 0,
		err:         ev.Events&unix.EPOLLERR != 0,
		exceptional: ev.Events&(unix.EPOLLRDHUP|unix.EPOLLHUP|unix.EPOLLPRI) != 0,
	}
}

func (p *poll) file() *os.File { return p.f }

func (p *poll) close() {
	if p.f != nil {
		p.f.Close()
	} else {
		unix.Close(p.epfd)
	}
}
