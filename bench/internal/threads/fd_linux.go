package threads

import (
	"sync"
	"syscall"
)

// fd is a blocking socket whose close(2) waits for the calls in flight.
//
// mu guards refs and closed. Every syscall on the fd runs between incref and
// decref; Close sets closed, shuts the socket down (which makes blocked
// read, write and accept calls return) and leaves close(2) to whichever of
// Close and the last decref sees refs reach zero. The fd number therefore
// stays ours while any call may still use it.
type fd struct {
	sysfd int

	mu     sync.Mutex
	refs   int
	closed bool
}

// isClosed reports whether Close has been called.
func (f *fd) isClosed() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.closed
}

// incref reserves the fd for one syscall; false if it is closed.
func (f *fd) incref() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.refs++
	return true
}

// decref releases a reservation, closing the fd if it was the last one
// after Close.
func (f *fd) decref() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs--
	if f.closed && f.refs == 0 {
		syscall.Close(f.sysfd)
	}
}

// close shuts the socket down and closes it once no call is in flight. It
// reports false if the fd was already closed.
func (f *fd) close() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.closed {
		return false
	}
	f.closed = true
	// Wakes a blocked read (it returns 0), write (EPIPE) or accept
	// (EINVAL). The error is ENOTCONN on an unconnected socket; ignore it.
	syscall.Shutdown(f.sysfd, syscall.SHUT_RDWR)
	if f.refs == 0 {
		syscall.Close(f.sysfd)
	}
	return true
}

// ignoringEINTR runs fn until it returns something other than EINTR. The Go
// runtime's preemption signals interrupt blocking syscalls.
func ignoringEINTR[T any](fn func() (T, error)) (T, error) {
	for {
		v, err := fn()
		if err != syscall.EINTR {
			return v, err
		}
	}
}
