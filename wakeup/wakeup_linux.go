//go:build linux

package wakeup

import (
	"os"

	"golang.org/x/sys/unix"
)

// fds is an eventfd: one fd both written and read. The 8-byte counter
// absorbs any number of writes until a read resets it.
type fds struct{ fd int }

func newFds() (fds, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return fds{}, os.NewSyscallError("eventfd", err)
	}
	return fds{fd: fd}, nil
}

func (f fds) readFd() int { return f.fd }

// one is the value added to the eventfd counter by each write.
var one = [8]byte{1, 0, 0, 0, 0, 0, 0, 0}

func (f fds) write() {
	for {
		// EAGAIN means the counter is at its maximum: already readable.
		if _, err := unix.Write(f.fd, one[:]); err != unix.EINTR {
			return
		}
	}
}

func (f fds) drain() {
	var buf [8]byte
	for {
		// One read resets an eventfd counter to zero; EAGAIN means it was.
		if _, err := unix.Read(f.fd, buf[:]); err != unix.EINTR {
			return
		}
	}
}

func (f fds) close() error { return unix.Close(f.fd) }
