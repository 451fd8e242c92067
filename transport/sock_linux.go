//go:build linux

package transport

import (
	"context"
	"errors"
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/deadline"
	"github.com/hubio/hubio/poller"
)

// dialFD opens a socket to raddr (a *net.TCPAddr or *net.UnixAddr), bound
// to laddr if given, and completes a non-blocking connect on the hub. The
// wait ends at ctx's deadline or cancellation. With mptcp, a TCP socket is
// opened with IPPROTO_MPTCP.
func dialFD(ctx context.Context, h *poller.Hub, network string, raddr, laddr net.Addr, ka keepAliveSettings, mptcp bool) (*netFD, error) {
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
	proto := 0
	if mptcp && family != syscall.AF_UNIX {
		proto = unix.IPPROTO_MPTCP
	}
	s, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, proto)
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
		stop = context.AfterFunc(ctx, func() { fd.reg.SetDeadline(poller.Write, deadline.Passed) })
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
