//go:build unix && !linux

package wakeup

import (
	"os"
	"syscall"
)

// fds is a pipe pair: Signal writes one byte to w, Drain empties r.
type fds struct{ r, w int }

func newFds() (fds, error) {
	var p [2]int
	syscall.ForkLock.RLock()
	err := syscall.Pipe(p[:])
	if err == nil {
		syscall.CloseOnExec(p[0])
		syscall.CloseOnExec(p[1])
	}
	syscall.ForkLock.RUnlock()
	if err != nil {
		return fds{}, os.NewSyscallError("pipe", err)
	}
	for _, fd := range p {
		if err := syscall.SetNonblock(fd, true); err != nil {
			syscall.Close(p[0])
			syscall.Close(p[1])
			return fds{}, os.NewSyscallError("setnonblock", err)
		}
	}
	return fds{r: p[0], w: p[1]}, nil
}

func (f fds) readFd() int { return f.r }

func (f fds) write() {
	b := [1]byte{1}
	for {
		// EAGAIN means the pipe is full: already readable.
		if _, err := syscall.Write(f.w, b[:]); err != syscall.EINTR {
			return
		}
	}
}

func (f fds) drain() {
	var buf [128]byte
	for {
		n, err := syscall.Read(f.r, buf[:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || n < len(buf) {
			return
		}
	}
}

func (f fds) close() error {
	err := syscall.Close(f.r)
	if err2 := syscall.Close(f.w); err == nil {
		err = err2
	}
	return err
}
