//go:build linux

package transport

import (
	"net"
	"os"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

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

// Socket option names used by the platform-independent code.
const (
	solSocket   = syscall.SOL_SOCKET
	ipprotoTCP  = syscall.IPPROTO_TCP
	tcpNoDelay  = syscall.TCP_NODELAY
	soKeepAlive = syscall.SO_KEEPALIVE
	soRcvBuf    = syscall.SO_RCVBUF
	soSndBuf    = syscall.SO_SNDBUF
)
