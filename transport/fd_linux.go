//go:build linux

package transport

import (
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

// maxRW caps a single read or write, as internal/poll does.
const maxRW = 1 << 30

// netFD is a non-blocking socket registered with a hub.
//
// Ownership: sysfd and reg are immutable after newFD. refs guards sysfd
// against reuse (see fdRefs). rmu serialises Read, Accept and RawRead; wmu
// serialises Write and RawWrite, so one goroutine at a time waits in each
// direction of reg and concurrent writes never interleave. Lock order: an
// operation holds at most one of rmu and wmu, taken after incref.
type netFD struct {
	sysfd int
	reg   *poller.Registration
	refs  fdRefs
	rmu   sync.Mutex
	wmu   sync.Mutex
	// done is closed by destroy, once sysfd has been closed.
	done chan struct{}
}

// newFD registers a non-blocking socket with h. On failure sysfd is closed.
func newFD(h *poller.Hub, sysfd int) (*netFD, error) {
	reg, err := h.Register(sysfd)
	if err != nil {
		syscall.Close(sysfd)
		return nil, err
	}
	return &netFD{sysfd: sysfd, reg: reg, done: make(chan struct{})}, nil
}

// decref ends an operation; the last one after Close closes the socket.
func (fd *netFD) decref() {
	if fd.refs.decref() {
		fd.destroy()
	}
}

func (fd *netFD) destroy() {
	syscall.Close(fd.sysfd)
	close(fd.done)
}

// Close marks the fd closed, wakes every waiter (they return net.ErrClosed),
// and returns once the socket itself is closed, when the last operation in
// flight has left.
func (fd *netFD) Close() error {
	if !fd.refs.markClosed() {
		return net.ErrClosed
	}
	fd.reg.Deregister()
	fd.decref()
	<-fd.done
	return nil
}

// Read is the retry loop: syscall, on EAGAIN wait on the hub, retry.
func (fd *netFD) Read(p []byte) (int, error) {
	if !fd.refs.incref() {
		return 0, net.ErrClosed
	}
	defer fd.decref()
	fd.rmu.Lock()
	defer fd.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if err := fd.reg.Prepare(poller.Read); err != nil {
		return 0, err
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	for {
		n, err := syscall.Read(fd.sysfd, p)
		if err != nil {
			if err == syscall.EAGAIN {
				if err = fd.reg.Wait(poller.Read); err == nil {
					continue
				}
				return 0, err
			}
			if err == syscall.EINTR {
				continue
			}
			return 0, os.NewSyscallError("read", err)
		}
		if n == 0 {
			return 0, io.EOF
		}
		return n, nil
	}
}

// readPooled waits for readability holding no buffer, then takes one from
// pool only for the read syscall; a buffer is returned only with data.
func (fd *netFD) readPooled(size int, pool BufferPool) (*[]byte, int, error) {
	if size < 0 {
		return nil, 0, syscall.EINVAL
	}
	if !fd.refs.incref() {
		return nil, 0, net.ErrClosed
	}
	defer fd.decref()
	fd.rmu.Lock()
	defer fd.rmu.Unlock()
	if size == 0 {
		return nil, 0, nil
	}
	if err := fd.reg.Prepare(poller.Read); err != nil {
		return nil, 0, err
	}
	for {
		b := pool.Get(min(size, maxRW))
		n, err := syscall.Read(fd.sysfd, *b)
		if err == nil && n > 0 {
			return b, n, nil
		}
		pool.Put(b)
		switch err {
		case nil:
			return nil, 0, io.EOF
		case syscall.EAGAIN:
			if err = fd.reg.Wait(poller.Read); err != nil {
				return nil, 0, err
			}
		case syscall.EINTR:
		default:
			return nil, 0, os.NewSyscallError("read", err)
		}
	}
}

// Write writes all of p, waiting on the hub whenever the socket buffer is
// full.
func (fd *netFD) Write(p []byte) (int, error) {
	if !fd.refs.incref() {
		return 0, net.ErrClosed
	}
	defer fd.decref()
	fd.wmu.Lock()
	defer fd.wmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if err := fd.reg.Prepare(poller.Write); err != nil {
		return 0, err
	}
	var nn int
	for nn < len(p) {
		chunk := p[nn:min(len(p), nn+maxRW)]
		n, err := syscall.Write(fd.sysfd, chunk)
		if n > 0 {
			nn += n
		}
		switch {
		case err == nil && n == 0:
			return nn, io.ErrUnexpectedEOF
		case err == nil, err == syscall.EINTR:
		case err == syscall.EAGAIN:
			if err = fd.reg.Wait(poller.Write); err != nil {
				return nn, err
			}
		default:
			return nn, os.NewSyscallError("write", err)
		}
	}
	return nn, nil
}

// maxIovecs caps the buffers handed to one writev (IOV_MAX is 1024).
const maxIovecs = 1024

// writeBuffers writes every buffer with writev, in as few syscalls as the
// socket buffer allows. Written bytes are consumed from *v.
func (fd *netFD) writeBuffers(v *net.Buffers) (int64, error) {
	if !fd.refs.incref() {
		return 0, net.ErrClosed
	}
	defer fd.decref()
	fd.wmu.Lock()
	defer fd.wmu.Unlock()
	if err := fd.reg.Prepare(poller.Write); err != nil {
		return 0, err
	}
	var total int64
	for {
		consume(v, 0) // drop empty buffers: writev of nothing writes 0
		if len(*v) == 0 {
			break
		}
		n, err := unix.Writev(fd.sysfd, (*v)[:min(len(*v), maxIovecs)])
		if n > 0 {
			total += int64(n)
			consume(v, n)
		}
		switch {
		case err == nil, err == unix.EINTR:
		case err == unix.EAGAIN:
			if err = fd.reg.Wait(poller.Write); err != nil {
				return total, err
			}
		default:
			return total, os.NewSyscallError("writev", err)
		}
	}
	return total, nil
}

// consume drops the first n bytes of *v, and any empty buffers after them.
func consume(v *net.Buffers, n int) {
	for len(*v) > 0 {
		b := (*v)[0]
		if len(b) > n {
			(*v)[0] = b[n:]
			return
		}
		n -= len(b)
		(*v)[0] = nil
		*v = (*v)[1:]
	}
}

// accept waits for and returns one connection, non-blocking and
// close-on-exec. ECONNABORTED (the peer gave up before we accepted) is
// retried; EMFILE and ENFILE come back as a *os.SyscallError whose
// Temporary() is true.
func (fd *netFD) accept() (int, syscall.Sockaddr, error) {
	if !fd.refs.incref() {
		return -1, nil, net.ErrClosed
	}
	defer fd.decref()
	fd.rmu.Lock()
	defer fd.rmu.Unlock()
	if err := fd.reg.Prepare(poller.Read); err != nil {
		return -1, nil, err
	}
	for {
		s, rsa, err := syscall.Accept4(fd.sysfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
		switch err {
		case nil:
			return s, rsa, nil
		case syscall.EAGAIN:
			if err = fd.reg.Wait(poller.Read); err != nil {
				return -1, nil, err
			}
		case syscall.EINTR, syscall.ECONNABORTED:
		default:
			return -1, nil, os.NewSyscallError("accept4", err)
		}
	}
}

// shutdown half-closes the socket (syscall.SHUT_RD or SHUT_WR).
func (fd *netFD) shutdown(how int) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	return os.NewSyscallError("shutdown", syscall.Shutdown(fd.sysfd, how))
}

// setDeadline sets the deadline of one or both directions.
func (fd *netFD) setDeadline(t time.Time, read, write bool) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	if read {
		fd.reg.SetDeadline(poller.Read, t)
	}
	if write {
		fd.reg.SetDeadline(poller.Write, t)
	}
	return nil
}

// control runs f on the fd number while it is guaranteed to stay open.
func (fd *netFD) control(f func(fd int) error) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	return f(fd.sysfd)
}

// rawRead calls f until it reports done, waiting for readability on the
// hub in between.
func (fd *netFD) rawRead(f func(uintptr) bool) error { return fd.rawIO(&fd.rmu, poller.Read, f) }

// rawWrite is rawRead for the write direction.
func (fd *netFD) rawWrite(f func(uintptr) bool) error { return fd.rawIO(&fd.wmu, poller.Write, f) }

// rawIO runs f under the direction's lock until it reports done.
func (fd *netFD) rawIO(mu *sync.Mutex, m poller.Mode, f func(uintptr) bool) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	mu.Lock()
	defer mu.Unlock()
	if err := fd.reg.Prepare(m); err != nil {
		return err
	}
	for !f(uintptr(fd.sysfd)) {
		if err := fd.reg.Wait(m); err != nil {
			return err
		}
	}
	return nil
}

func (fd *netFD) hub() *poller.Hub { return fd.reg.Hub() }

// acceptConn accepts one connection and registers it with the listener's
// hub, with package net's TCP defaults.
func (fd *netFD) acceptConn(isUnix bool) (*netFD, net.Addr, net.Addr, error) {
	s, rsa, err := fd.accept()
	if err != nil {
		return nil, nil, nil, err
	}
	nfd, err := newFD(fd.hub(), s)
	if err != nil {
		return nil, nil, nil, err
	}
	if !isUnix {
		// As a net.ListenConfig with no keepalive settings does.
		nfd.setTCPDefaults(0, net.KeepAliveConfig{})
	}
	return nfd, nfd.localAddr(isUnix), fromSockaddr(rsa, isUnix), nil
}

// Shutdown directions, named for the platform-independent code.
const (
	shutRD = syscall.SHUT_RD
	shutWR = syscall.SHUT_WR
)
