//go:build linux

package transport

import (
	"context"
	"errors"
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
	// stats counts syscalls and bytes; see stats.go.
	stats connCounters
	// tstamps holds the write-timestamp state; see tstamp_linux.go.
	tstamps tstampSlot
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
	fd.observeClose()
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
				fd.stats.waitRead()
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
		fd.stats.read(n)
		return n, nil
	}
}

// readPooled waits for readability holding no buffer, then takes one from
// pool only for the read syscall; a buffer is returned only with data.
func (fd *netFD) readPooled(size int, pool BufferPool) (*[]byte, int, error) {
	if !fd.refs.incref() {
		return nil, 0, net.ErrClosed
	}
	defer fd.decref()
	fd.rmu.Lock()
	defer fd.rmu.Unlock()
	if err := fd.reg.Prepare(poller.Read); err != nil {
		return nil, 0, err
	}
	for {
		b := pool.Get(min(size, maxRW))
		n, err := syscall.Read(fd.sysfd, *b)
		if err == nil && n > 0 {
			fd.stats.read(n)
			return b, n, nil
		}
		pool.Put(b)
		switch err {
		case nil:
			return nil, 0, io.EOF
		case syscall.EAGAIN:
			fd.stats.waitRead()
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
	if ts := fd.tstamps.due(); ts != nil {
		return fd.writeSampled(ts, p)
	}
	var nn int
	for nn < len(p) {
		chunk := p[nn:min(len(p), nn+maxRW)]
		n, err := syscall.Write(fd.sysfd, chunk)
		if n > 0 {
			nn += n
			fd.stats.wrote(n)
		}
		switch {
		case err == nil && n == 0:
			return nn, io.ErrUnexpectedEOF
		case err == nil, err == syscall.EINTR:
		case err == syscall.EAGAIN:
			fd.stats.waitWrite()
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
			fd.stats.wrote(n)
		}
		switch {
		case err == nil, err == unix.EINTR:
		case err == unix.EAGAIN:
			fd.stats.waitWrite()
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

// dupFD duplicates the fd of a standard library socket (close-on-exec,
// non-blocking), so that the original can be closed independently.
func dupFD(sc syscall.Conn) (int, error) {
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	ns := -1
	var derr error
	if err := rc.Control(func(fd uintptr) {
		ns, derr = dupCloexec(int(fd))
	}); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, os.NewSyscallError("fcntl", derr)
	}
	// O_NONBLOCK lives in the shared open file description: already set by
	// package net, but make sure.
	if err := syscall.SetNonblock(ns, true); err != nil {
		syscall.Close(ns)
		return -1, os.NewSyscallError("setnonblock", err)
	}
	return ns, nil
}

func dupCloexec(fd int) (int, error) {
	for {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, uintptr(fd), syscall.F_DUPFD_CLOEXEC, 0)
		if e == syscall.EINTR {
			continue
		}
		if e != 0 {
			return -1, e
		}
		return int(r), nil
	}
}

// dialFD opens a socket to raddr (a *net.TCPAddr or *net.UnixAddr), bound
// to laddr if given, and completes a non-blocking connect on the hub. The
// wait ends at ctx's deadline or cancellation.
func dialFD(ctx context.Context, h *poller.Hub, network string, raddr, laddr net.Addr, ka keepAlive) (*netFD, error) {
	family, rsa, err := toSockaddr(network, raddr)
	if err != nil {
		return nil, err
	}
	var lsa syscall.Sockaddr
	if laddr != nil {
		lnet := network
		if family == syscall.AF_INET6 && lnet == "tcp" {
			lnet = "tcp6" // an IPv4 local address becomes v4-mapped
		}
		lfam, sa, err := toSockaddr(lnet, laddr)
		if err != nil {
			return nil, err
		}
		if lfam != family {
			return nil, &net.AddrError{Err: "mismatched local address type", Addr: laddr.String()}
		}
		lsa = sa
	}
	s, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, os.NewSyscallError("socket", err)
	}
	if lsa != nil {
		if err := syscall.Bind(s, lsa); err != nil {
			syscall.Close(s)
			return nil, os.NewSyscallError("bind", err)
		}
	}
	fd, err := newFD(h, s)
	if err != nil {
		return nil, err
	}
	if err := fd.connect(ctx, rsa); err != nil {
		fd.Close()
		return nil, err
	}
	if family != syscall.AF_UNIX {
		if err := fd.setTCPDefaults(ka); err != nil {
			fd.Close()
			return nil, err
		}
	}
	return fd, nil
}

// aLongTimeAgo is a deadline that has passed: it aborts a wait at once.
var aLongTimeAgo = time.Unix(1, 0)

func (fd *netFD) connect(ctx context.Context, rsa syscall.Sockaddr) error {
	switch err := syscall.Connect(fd.sysfd, rsa); err {
	case syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
	case nil, syscall.EISCONN:
		return ctx.Err()
	default:
		return os.NewSyscallError("connect", err)
	}
	if d, ok := ctx.Deadline(); ok {
		fd.reg.SetDeadline(poller.Write, d)
	}
	// A cancelled ctx aborts the wait through a past deadline. The
	// AfterFunc is stopped before the deadline is cleared on success: if
	// it already ran (or is running), the dial reports ctx's error rather
	// than return a conn whose writes would all time out.
	stop := func() bool { return true }
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, func() { fd.reg.SetDeadline(poller.Write, aLongTimeAgo) })
		defer stop()
	}
	for {
		if err := fd.reg.Wait(poller.Write); err != nil {
			if cerr := ctx.Err(); cerr != nil {
				return cerr
			}
			if errors.Is(err, os.ErrDeadlineExceeded) {
				// The only deadline set here is ctx's, and the hub's timer
				// can fire a moment before ctx's own.
				return context.DeadlineExceeded
			}
			return err
		}
		nerr, err := syscall.GetsockoptInt(fd.sysfd, syscall.SOL_SOCKET, syscall.SO_ERROR)
		if err != nil {
			return os.NewSyscallError("getsockopt", err)
		}
		switch err := syscall.Errno(nerr); err {
		case syscall.EINPROGRESS, syscall.EALREADY, syscall.EINTR:
		case 0, syscall.EISCONN:
			// A wake can be spurious: connected only once there is a peer.
			if _, err := syscall.Getpeername(fd.sysfd); err == nil {
				if !stop() {
					return ctx.Err()
				}
				fd.reg.SetDeadline(poller.Write, time.Time{})
				return nil
			}
		default:
			return os.NewSyscallError("connect", err)
		}
	}
}

// keepAlive is the TCP keepalive configuration of a conn; idle ≤ 0 disables it.
type keepAlive struct {
	idle, interval time.Duration
	count          int
}

// defaultKeepAlive is what package net uses when none is given: probes
// after 15 s idle, every 15 s, 9 of them.
var defaultKeepAlive = keepAlive{idle: 15 * time.Second, interval: 15 * time.Second, count: 9}

// setTCPDefaults sets TCP_NODELAY and keepalive as package net does.
func (fd *netFD) setTCPDefaults(ka keepAlive) error {
	return fd.control(func(s int) error {
		if err := syscall.SetsockoptInt(s, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
		return setKeepAlive(s, ka)
	})
}

func setKeepAlive(s int, ka keepAlive) error {
	if ka.idle <= 0 {
		return os.NewSyscallError("setsockopt", syscall.SetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 0))
	}
	secs := func(d time.Duration) int { return max(int((d+time.Second-1)/time.Second), 1) }
	for _, o := range [...]struct{ level, name, v int }{
		{syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, 1},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPIDLE, secs(ka.idle)},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPINTVL, secs(ka.interval)},
		{syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, ka.count},
	} {
		if err := syscall.SetsockoptInt(s, o.level, o.name, o.v); err != nil {
			return os.NewSyscallError("setsockopt", err)
		}
	}
	return nil
}

// sockopt sets an integer socket option on the fd.
func (fd *netFD) sockopt(level, name, v int) error {
	return fd.control(func(s int) error {
		return os.NewSyscallError("setsockopt", syscall.SetsockoptInt(s, level, name, v))
	})
}

func (fd *netFD) setLinger(sec int) error {
	l := syscall.Linger{}
	if sec >= 0 {
		l.Onoff, l.Linger = 1, int32(sec)
	}
	return fd.control(func(s int) error {
		return os.NewSyscallError("setsockopt", syscall.SetsockoptLinger(s, syscall.SOL_SOCKET, syscall.SO_LINGER, &l))
	})
}

func (fd *netFD) setKeepAlive(ka keepAlive) error {
	return fd.control(func(s int) error { return setKeepAlive(s, ka) })
}

// localAddr reads the socket's own address.
func (fd *netFD) localAddr(unix bool) net.Addr {
	var a net.Addr
	fd.control(func(s int) error {
		if sa, err := syscall.Getsockname(s); err == nil {
			a = fromSockaddr(sa, unix)
		}
		return nil
	})
	return a
}

// toSockaddr converts a *net.TCPAddr or *net.UnixAddr for a socket of
// network: "tcp6" always uses AF_INET6 (an IPv4 address becomes
// v4-mapped); "tcp" and "tcp4" use AF_INET for IPv4 and unspecified
// addresses, as package net does.
func toSockaddr(network string, a net.Addr) (int, syscall.Sockaddr, error) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip4 := a.IP.To4()
		if network != "tcp6" && (a.IP == nil || ip4 != nil) {
			sa := &syscall.SockaddrInet4{Port: a.Port}
			copy(sa.Addr[:], ip4)
			return syscall.AF_INET, sa, nil
		}
		if network == "tcp4" {
			return 0, nil, &net.AddrError{Err: "non-IPv4 address", Addr: a.String()}
		}
		sa := &syscall.SockaddrInet6{Port: a.Port}
		if a.IP != nil {
			copy(sa.Addr[:], a.IP.To16())
		}
		if a.Zone != "" {
			if ifi, err := net.InterfaceByName(a.Zone); err == nil {
				sa.ZoneId = uint32(ifi.Index)
			}
		}
		return syscall.AF_INET6, sa, nil
	case *net.UnixAddr:
		return syscall.AF_UNIX, &syscall.SockaddrUnix{Name: a.Name}, nil
	}
	return 0, nil, &net.AddrError{Err: "unexpected address type", Addr: a.String()}
}

// fromSockaddr converts to the address types package net reports.
func fromSockaddr(sa syscall.Sockaddr, unix bool) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		if sa.ZoneId != 0 {
			if ifi, err := net.InterfaceByIndex(int(sa.ZoneId)); err == nil {
				a.Zone = ifi.Name
			}
		}
		return a
	case *syscall.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	if unix {
		return &net.UnixAddr{Net: "unix"}
	}
	return nil
}

// Socket option names used by the platform-independent code.
const (
	shutRD      = syscall.SHUT_RD
	shutWR      = syscall.SHUT_WR
	solSocket   = syscall.SOL_SOCKET
	ipprotoTCP  = syscall.IPPROTO_TCP
	tcpNoDelay  = syscall.TCP_NODELAY
	soKeepAlive = syscall.SO_KEEPALIVE
	soRcvBuf    = syscall.SO_RCVBUF
	soSndBuf    = syscall.SO_SNDBUF
)

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
		// Best effort, as package net: a socket option that cannot be set
		// must not fail Accept (a server would stop serving).
		nfd.setTCPDefaults(defaultKeepAlive)
	}
	return nfd, nfd.localAddr(isUnix), fromSockaddr(rsa, isUnix), nil
}
