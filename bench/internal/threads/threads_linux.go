package threads

import (
	"context"
	"io"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"
)

// Conn is a TCP connection over a blocking socket. Read and Write block
// their OS thread in the kernel. It is safe for one Read and one Write at a
// time to run concurrently with each other and with Close.
type Conn struct {
	fd     *fd
	local  net.Addr
	remote net.Addr
}

// Listener accepts TCP connections with a blocking accept4(2).
type Listener struct {
	fd   *fd
	addr net.Addr
}

// Listen announces on a TCP address "ip:port" (an IP literal; port 0 picks
// one) with a socket in blocking mode.
func Listen(address string) (*Listener, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: "tcp", Err: err}
	}
	s, err := socket(ap)
	if err != nil {
		return nil, opError("listen", nil, net.TCPAddrFromAddrPort(ap), err)
	}
	if err := syscall.SetsockoptInt(s, syscall.SOL_SOCKET, syscall.SO_REUSEADDR, 1); err != nil {
		syscall.Close(s)
		return nil, opError("listen", nil, net.TCPAddrFromAddrPort(ap), os.NewSyscallError("setsockopt", err))
	}
	if err := syscall.Bind(s, sockaddr(ap)); err != nil {
		syscall.Close(s)
		return nil, opError("listen", nil, net.TCPAddrFromAddrPort(ap), os.NewSyscallError("bind", err))
	}
	if err := syscall.Listen(s, syscall.SOMAXCONN); err != nil {
		syscall.Close(s)
		return nil, opError("listen", nil, net.TCPAddrFromAddrPort(ap), os.NewSyscallError("listen", err))
	}
	local, _ := syscall.Getsockname(s)
	return &Listener{fd: &fd{sysfd: s}, addr: tcpAddr(local)}, nil
}

// Accept waits in accept4(2) for the next connection. Temporary errors
// (EMFILE, ENFILE, ECONNABORTED) report Temporary() == true, as grpc-go's
// Serve loop expects.
func (l *Listener) Accept() (net.Conn, error) {
	if !l.fd.incref() {
		return nil, opError("accept", l.addr, nil, net.ErrClosed)
	}
	defer l.fd.decref()
	s, err := ignoringEINTR(func() (int, error) {
		s, _, err := syscall.Accept4(l.fd.sysfd, syscall.SOCK_CLOEXEC)
		return s, err
	})
	if err != nil {
		if l.fd.isClosed() {
			return nil, opError("accept", l.addr, nil, net.ErrClosed)
		}
		return nil, opError("accept", l.addr, nil, os.NewSyscallError("accept4", err))
	}
	c, err := newConn(s)
	if err != nil {
		return nil, opError("accept", l.addr, nil, err)
	}
	return c, nil
}

// Close stops listening; a blocked Accept returns net.ErrClosed.
func (l *Listener) Close() error {
	if !l.fd.close() {
		return opError("close", l.addr, nil, net.ErrClosed)
	}
	return nil
}

// Addr returns the listening address.
func (l *Listener) Addr() net.Addr { return l.addr }

// Dial connects to a TCP address "ip:port" with a blocking connect(2). It
// has the signature grpc.WithContextDialer wants; ctx is not watched while
// connect blocks.
func Dial(ctx context.Context, address string) (net.Conn, error) {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: err}
	}
	raddr := net.TCPAddrFromAddrPort(ap)
	if err := ctx.Err(); err != nil {
		return nil, opError("dial", nil, raddr, err)
	}
	s, err := socket(ap)
	if err != nil {
		return nil, opError("dial", nil, raddr, err)
	}
	if err := connect(s, sockaddr(ap)); err != nil {
		syscall.Close(s)
		return nil, opError("dial", nil, raddr, os.NewSyscallError("connect", err))
	}
	c, err := newConn(s)
	if err != nil {
		return nil, opError("dial", nil, raddr, err)
	}
	return c, nil
}

// connect runs a blocking connect(2). Signal handlers are installed with
// SA_RESTART, so EINTR is unlikely; if it comes, the kernel goes on
// connecting, and connect is retried until it reports EISCONN.
func connect(s int, sa syscall.Sockaddr) error {
	err := syscall.Connect(s, sa)
	for interrupted := false; ; interrupted = true {
		switch {
		case err == nil:
			return nil
		case err == syscall.EISCONN && interrupted:
			return nil
		case err == syscall.EINTR, err == syscall.EALREADY && interrupted:
			time.Sleep(50 * time.Microsecond)
			err = syscall.Connect(s, sa)
		default:
			return err
		}
	}
}

// socket returns a blocking, close-on-exec TCP socket for ap's family.
func socket(ap netip.AddrPort) (int, error) {
	family := syscall.AF_INET
	if !ap.Addr().Unmap().Is4() {
		family = syscall.AF_INET6
	}
	s, err := syscall.Socket(family, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, syscall.IPPROTO_TCP)
	if err != nil {
		return -1, os.NewSyscallError("socket", err)
	}
	if err := syscall.SetNonblock(s, false); err != nil {
		syscall.Close(s)
		return -1, os.NewSyscallError("fcntl", err)
	}
	return s, nil
}

// newConn wraps a connected socket, making sure it is blocking and has
// TCP_NODELAY set.
func newConn(s int) (*Conn, error) {
	if err := syscall.SetNonblock(s, false); err != nil {
		syscall.Close(s)
		return nil, os.NewSyscallError("fcntl", err)
	}
	if err := syscall.SetsockoptInt(s, syscall.IPPROTO_TCP, syscall.TCP_NODELAY, 1); err != nil {
		syscall.Close(s)
		return nil, os.NewSyscallError("setsockopt", err)
	}
	local, _ := syscall.Getsockname(s)
	remote, _ := syscall.Getpeername(s)
	return &Conn{fd: &fd{sysfd: s}, local: tcpAddr(local), remote: tcpAddr(remote)}, nil
}

// Read reads with a blocking read(2). It returns io.EOF at the end of the
// stream and net.ErrClosed (in a *net.OpError) once Close was called, also
// for a Read that was blocked when Close ran.
func (c *Conn) Read(b []byte) (int, error) {
	if !c.fd.incref() {
		return 0, c.opError("read", net.ErrClosed)
	}
	defer c.fd.decref()
	if len(b) == 0 {
		return 0, nil
	}
	n, err := ignoringEINTR(func() (int, error) { return syscall.Read(c.fd.sysfd, b) })
	if n > 0 {
		return n, nil
	}
	if c.fd.isClosed() {
		return 0, c.opError("read", net.ErrClosed)
	}
	if err != nil {
		return 0, c.opError("read", os.NewSyscallError("read", err))
	}
	return 0, io.EOF
}

// Write writes all of b with blocking write(2) calls (a signal may cut one
// short). It returns net.ErrClosed (in a *net.OpError) once Close was
// called.
func (c *Conn) Write(b []byte) (int, error) {
	if !c.fd.incref() {
		return 0, c.opError("write", net.ErrClosed)
	}
	defer c.fd.decref()
	done := 0
	for done < len(b) {
		n, err := ignoringEINTR(func() (int, error) { return syscall.Write(c.fd.sysfd, b[done:]) })
		if n > 0 {
			done += n
		}
		if err != nil {
			if c.fd.isClosed() {
				err = net.ErrClosed
			} else {
				err = os.NewSyscallError("write", err)
			}
			return done, c.opError("write", err)
		}
	}
	return done, nil
}

// Close shuts the socket down, which unblocks a blocked Read or Write, and
// closes it once they have returned. A second Close returns net.ErrClosed.
func (c *Conn) Close() error {
	if !c.fd.close() {
		return c.opError("close", net.ErrClosed)
	}
	return nil
}

// LocalAddr returns the local address.
func (c *Conn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() net.Addr { return c.remote }

// SetDeadline does nothing: deadlines are not supported (see the package
// comment).
func (c *Conn) SetDeadline(time.Time) error { return nil }

// SetReadDeadline does nothing: deadlines are not supported.
func (c *Conn) SetReadDeadline(time.Time) error { return nil }

// SetWriteDeadline does nothing: deadlines are not supported.
func (c *Conn) SetWriteDeadline(time.Time) error { return nil }

func (c *Conn) opError(op string, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: c.local, Addr: c.remote, Err: err}
}

func opError(op string, source, addr net.Addr, err error) error {
	return &net.OpError{Op: op, Net: "tcp", Source: source, Addr: addr, Err: err}
}

func sockaddr(ap netip.AddrPort) syscall.Sockaddr {
	a := ap.Addr()
	if a.Unmap().Is4() {
		return &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: a.Unmap().As4()}
	}
	return &syscall.SockaddrInet6{Port: int(ap.Port()), Addr: a.As16()}
}

func tcpAddr(sa syscall.Sockaddr) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]).To16(), Port: sa.Port}
	case *syscall.SockaddrInet6:
		return &net.TCPAddr{IP: net.IP(sa.Addr[:]), Port: sa.Port}
	}
	return &net.TCPAddr{}
}
