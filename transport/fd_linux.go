//go:build linux

package transport

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strconv"
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
func dialFD(ctx context.Context, h *poller.Hub, network string, raddr, laddr net.Addr, ka keepAliveSettings) (*netFD, error) {
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
		fd.setTCPDefaults(ka.keepAlive, ka.config)
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

// Package net's keepalive defaults (net/dial.go): probes after 15 s idle,
// every 15 s, 9 of them.
const (
	defaultKeepAliveIdle     = 15 * time.Second
	defaultKeepAliveInterval = 15 * time.Second
	defaultKeepAliveCount    = 9
)

// setTCPDefaults sets TCP_NODELAY and keepalive on a new TCP conn as
// package net's newTCPConn does: a disabled ka with keepAlive >= 0 enables
// keepalive with that idle time (0 meaning the default). Errors are
// ignored, as package net ignores them: a socket option that cannot be set
// must not fail a dial or an Accept.
func (fd *netFD) setTCPDefaults(keepAlive time.Duration, ka net.KeepAliveConfig) {
	fd.control(func(s int) error {
		syscall.SetsockoptInt(s, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1)
		if !ka.Enable && keepAlive >= 0 {
			ka = net.KeepAliveConfig{Enable: true, Idle: keepAlive}
		}
		if ka.Enable {
			setKeepAliveConfig(s, ka)
		}
		return nil
	})
}

// setKeepAliveConfig is (*net.TCPConn).SetKeepAliveConfig: SO_KEEPALIVE
// from Enable, then each of idle, interval and count, where 0 means
// package net's default and a negative value leaves the option as it is.
func setKeepAliveConfig(s int, ka net.KeepAliveConfig) error {
	if err := setsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_KEEPALIVE, boolInt(ka.Enable)); err != nil {
		return err
	}
	if err := setKeepAliveIdle(s, ka.Idle); err != nil {
		return err
	}
	if err := setKeepAliveSecs(s, syscall.TCP_KEEPINTVL, ka.Interval, defaultKeepAliveInterval); err != nil {
		return err
	}
	switch n := ka.Count; {
	case n == 0:
		n = defaultKeepAliveCount
		fallthrough
	case n > 0:
		return setsockoptInt(s, syscall.IPPROTO_TCP, syscall.TCP_KEEPCNT, n)
	}
	return nil
}

// setKeepAliveIdle is (*net.TCPConn).SetKeepAlivePeriod: TCP_KEEPIDLE only,
// 0 meaning 15 s and a negative period changing nothing.
func setKeepAliveIdle(s int, d time.Duration) error {
	return setKeepAliveSecs(s, syscall.TCP_KEEPIDLE, d, defaultKeepAliveIdle)
}

// setKeepAliveSecs sets a keepalive time option in whole seconds, rounded
// up as the kernel counts seconds; d == 0 means def, d < 0 changes nothing.
func setKeepAliveSecs(s, name int, d, def time.Duration) error {
	if d == 0 {
		d = def
	} else if d < 0 {
		return nil
	}
	return setsockoptInt(s, syscall.IPPROTO_TCP, name, int((d+time.Second-1)/time.Second))
}

func setsockoptInt(s, level, name, v int) error {
	return os.NewSyscallError("setsockopt", syscall.SetsockoptInt(s, level, name, v))
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

// mptcpInfo is MPTCP_INFO from linux/mptcp.h (not in x/sys/unix).
const mptcpInfo = 1

// multipathTCP reports whether the socket uses MPTCP, as package net's
// isUsingMultipathTCP does: an MPTCP socket that has fallen back to TCP
// fails MPTCP_INFO with EOPNOTSUPP (IPv4) or ENOPROTOOPT (IPv6).
func (fd *netFD) multipathTCP() (bool, error) {
	var using bool
	err := fd.control(func(s int) error {
		if proto, _ := syscall.GetsockoptInt(s, syscall.SOL_SOCKET, unix.SO_PROTOCOL); proto != unix.IPPROTO_MPTCP {
			return nil
		}
		_, err := syscall.GetsockoptInt(s, unix.SOL_MPTCP, mptcpInfo)
		using = err != syscall.EOPNOTSUPP && err != syscall.ENOPROTOOPT
		return nil
	})
	return using, err
}

func (fd *netFD) setKeepAlivePeriod(d time.Duration) error {
	return fd.control(func(s int) error { return setKeepAliveIdle(s, d) })
}

func (fd *netFD) setKeepAliveConfig(ka net.KeepAliveConfig) error {
	return fd.control(func(s int) error { return setKeepAliveConfig(s, ka) })
}

// localAddr reads the socket's own address.
func (fd *netFD) localAddr(unix bool) net.Addr { return fd.addr(syscall.Getsockname, unix) }

// remoteAddr reads the peer's address, as the kernel reports it (package
// net's dialed conns report this one, not the address dialed).
func (fd *netFD) remoteAddr(unix bool) net.Addr { return fd.addr(syscall.Getpeername, unix) }

func (fd *netFD) addr(get func(int) (syscall.Sockaddr, error), unix bool) net.Addr {
	var a net.Addr
	fd.control(func(s int) error {
		if sa, err := get(s); err == nil {
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
		sa.ZoneId = uint32(zoneIndex(a.Zone))
		return syscall.AF_INET6, sa, nil
	case *net.UnixAddr:
		return syscall.AF_UNIX, &syscall.SockaddrUnix{Name: a.Name}, nil
	}
	return 0, nil, &net.AddrError{Err: "unexpected address type", Addr: a.String()}
}

// zoneIndex turns an IPv6 zone into an interface index as package net's
// zoneCache.index does: an interface name, else the zone's leading decimal
// digits (dtoi: capped at 0xFFFFFF), else 0.
func zoneIndex(zone string) int {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return ifi.Index
	}
	const big = 0xFFFFFF
	n := 0
	for i := 0; i < len(zone) && '0' <= zone[i] && zone[i] <= '9'; i++ {
		if n = n*10 + int(zone[i]-'0'); n >= big {
			return big
		}
	}
	return n
}

// zoneName is the reverse of zoneIndex, as package net's zoneCache.name:
// the interface's name, else the index in decimal; 0 is no zone.
func zoneName(index int) string {
	if index == 0 {
		return ""
	}
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(index)
}

// fromSockaddr converts to the address types package net reports.
func fromSockaddr(sa syscall.Sockaddr, unix bool) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		a.Zone = zoneName(int(sa.ZoneId))
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
		// As a net.ListenConfig with no keepalive settings does.
		nfd.setTCPDefaults(0, net.KeepAliveConfig{})
	}
	return nfd, nfd.localAddr(isUnix), fromSockaddr(rsa, isUnix), nil
}
