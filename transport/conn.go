package transport

import (
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"
	"time"

	"github.com/hubio/hubio/internal/deadline"
	"github.com/hubio/hubio/poller"
)

// Conn is a TCP or unix stream socket whose every wait for readiness goes
// through a hub. It behaves as a *net.TCPConn or *net.UnixConn does: Read
// and Write run in the caller's goroutine, Close unblocks every blocked call
// with net.ErrClosed, deadlines fail calls with os.ErrDeadlineExceeded, and
// errors are *net.OpError values.
//
// A Conn is safe for concurrent use: reads are serialised among themselves,
// as are writes, so one Write is never interleaved with another.
type Conn struct {
	// All fields are immutable after newConn: a Conn needs no lock of its
	// own (its netFD serialises what must be).
	fd           *netFD
	net          string // "tcp" or "unix"
	laddr, raddr net.Addr
}

var (
	_ net.Conn                        = (*Conn)(nil)
	_ syscall.Conn                    = (*Conn)(nil)
	_ interface{ CloseWrite() error } = (*Conn)(nil)
)

func newConn(fd *netFD, network string, laddr, raddr net.Addr) *Conn {
	return &Conn{fd: fd, net: network, laddr: laddr, raddr: raddr}
}

func (c *Conn) opErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.net, Source: c.laddr, Addr: c.raddr, Err: err}
}

// localOpErr is opErr for the operations whose errors package net reports
// with the local address in Addr and no Source (net.conn's SetDeadline,
// SetReadBuffer, SetWriteBuffer and RawConn.Control).
func (c *Conn) localOpErr(op string, err error) error {
	return &net.OpError{Op: op, Net: c.net, Addr: c.laddr, Err: err}
}

// Read reads into b, waiting on the hub while no data is available. It
// returns io.EOF once the peer has shut down its side and all data is read.
func (c *Conn) Read(b []byte) (int, error) {
	n, err := c.fd.Read(b)
	if err != nil && err != io.EOF {
		err = c.opErr("read", err)
	}
	return n, err
}

// BufferPool lends read buffers; grpc-go's mem.BufferPool satisfies it.
type BufferPool interface {
	// Get returns a buffer of the given length.
	Get(length int) *[]byte
	// Put returns a buffer obtained from Get.
	Put(*[]byte)
}

// ReadPooled waits until the conn is readable without holding a buffer,
// then reads into a buffer of up to size bytes taken from pool. It returns
// the buffer (the caller puts it back) and the bytes read, or an error and
// no buffer; io.EOF once the peer has shut down its side. An idle conn so
// pins no memory: this is grpc-go's ReadOnReady contract.
//
// As Read with an empty buffer, size 0 returns no buffer, 0 and nil
// without a syscall (net.ErrClosed once the conn is closed); a negative
// size fails with syscall.EINVAL and takes nothing from pool.
func (c *Conn) ReadPooled(size int, pool BufferPool) (*[]byte, int, error) {
	b, n, err := c.fd.readPooled(size, pool)
	if err != nil && err != io.EOF {
		err = c.opErr("read", err)
	}
	return b, n, err
}

// Write writes all of b, waiting on the hub whenever the socket buffer is
// full; it returns fewer bytes only with an error.
func (c *Conn) Write(b []byte) (int, error) {
	n, err := c.fd.Write(b)
	if err != nil {
		err = c.opErr("write", err)
	}
	return n, err
}

// WriteBuffers writes all of v with as few writev syscalls as the socket
// allows, consuming what it wrote from v. (net.Buffers.WriteTo cannot use
// writev on a conn outside package net; call this instead.)
func (c *Conn) WriteBuffers(v *net.Buffers) (int64, error) {
	n, err := c.fd.writeBuffers(v)
	if err != nil {
		err = c.opErr("writev", err)
	}
	return n, err
}

// Close closes the conn. Blocked Read and Write calls return net.ErrClosed;
// the socket is closed once they have left, before Close returns.
func (c *Conn) Close() error {
	if err := c.fd.Close(); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// CloseRead shuts down the reading side.
func (c *Conn) CloseRead() error {
	if err := c.fd.shutdown(shutRD); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// CloseWrite shuts down the writing side: the peer reads io.EOF.
func (c *Conn) CloseWrite() error {
	if err := c.fd.shutdown(shutWR); err != nil {
		return c.opErr("close", err)
	}
	return nil
}

// LocalAddr returns a *net.TCPAddr or *net.UnixAddr.
func (c *Conn) LocalAddr() net.Addr { return c.laddr }

// RemoteAddr returns a *net.TCPAddr or *net.UnixAddr.
func (c *Conn) RemoteAddr() net.Addr { return c.raddr }

// SetDeadline sets both the read and write deadlines. A deadline moved
// while a call is blocked takes effect for that call.
func (c *Conn) SetDeadline(t time.Time) error { return c.setDeadline(t, true, true) }

// SetReadDeadline sets the read deadline.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.setDeadline(t, true, false) }

// SetWriteDeadline sets the write deadline.
func (c *Conn) SetWriteDeadline(t time.Time) error { return c.setDeadline(t, false, true) }

func (c *Conn) setDeadline(t time.Time, read, write bool) error {
	if err := c.fd.setDeadline(t, read, write); err != nil {
		return c.localOpErr("set", err)
	}
	return nil
}

// readDeadlineOf is internal/deadline's ReadOf: the read deadline of the
// hub conn c is or wraps, for grpcopt (see there).
func readDeadlineOf(c net.Conn) (time.Time, bool) {
	if hc, ok := Beneath[*Conn](c); ok {
		return hc.fd.readDeadline(), true
	}
	return time.Time{}, false
}

func init() { deadline.ReadOf = readDeadlineOf }

// SetNoDelay sets TCP_NODELAY (on by default, as in package net).
func (c *Conn) SetNoDelay(noDelay bool) error {
	return c.setInt("set", "tcp", ipprotoTCP, tcpNoDelay, boolInt(noDelay))
}

// SetKeepAlive turns TCP keepalive probes on or off.
func (c *Conn) SetKeepAlive(on bool) error {
	return c.setInt("set", "tcp", solSocket, soKeepAlive, boolInt(on))
}

// SetKeepAlivePeriod sets the idle time before the first keepalive probe
// (TCP_KEEPIDLE), as (*net.TCPConn).SetKeepAlivePeriod does: 0 means
// package net's default (15 s), a negative period changes nothing, and the
// interval and count of probes are left as they are.
func (c *Conn) SetKeepAlivePeriod(d time.Duration) error {
	if !c.isTCP() {
		return c.opErr("set", syscall.EOPNOTSUPP)
	}
	if err := c.fd.setKeepAlivePeriod(d); err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// SetKeepAliveConfig configures keepalive probes as
// (*net.TCPConn).SetKeepAliveConfig does: SO_KEEPALIVE from Enable, then
// the idle time, interval and count, where 0 means package net's default
// (15 s, 15 s, 9) and a negative value leaves that option as it is.
func (c *Conn) SetKeepAliveConfig(config net.KeepAliveConfig) error {
	if !c.isTCP() {
		return c.opErr("set", syscall.EOPNOTSUPP)
	}
	if err := c.fd.setKeepAliveConfig(config); err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// MultipathTCP reports whether the conn is using MPTCP, as
// (*net.TCPConn).MultipathTCP does: a conn dialed by a Dialer given
// SetMultipathTCP(true), or accepted from an MPTCP client by a listener
// package net created (package net listens with MPTCP by default where the
// kernel supports it, and Listen listens through package net).
func (c *Conn) MultipathTCP() (bool, error) {
	using, err := c.fd.multipathTCP()
	if err != nil {
		return false, c.opErr("get", err)
	}
	return using, nil
}

// SetLinger sets SO_LINGER as (*net.TCPConn).SetLinger does: sec < 0 is the
// default (close returns at once, data is sent in the background), 0
// discards unsent data and resets the connection on Close.
func (c *Conn) SetLinger(sec int) error {
	if err := c.fd.setLinger(sec); err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// SetReadBuffer sets SO_RCVBUF.
func (c *Conn) SetReadBuffer(bytes int) error {
	if err := c.fd.sockopt(solSocket, soRcvBuf, bytes); err != nil {
		return c.localOpErr("set", err)
	}
	return nil
}

// SetWriteBuffer sets SO_SNDBUF.
func (c *Conn) SetWriteBuffer(bytes int) error {
	if err := c.fd.sockopt(solSocket, soSndBuf, bytes); err != nil {
		return c.localOpErr("set", err)
	}
	return nil
}

// SetSockoptInt sets an integer socket option (for example TCP_USER_TIMEOUT,
// which grpcopt sets from gRPC keepalive parameters).
func (c *Conn) SetSockoptInt(level, name, value int) error {
	return c.setInt("set", "", level, name, value)
}

func (c *Conn) setInt(op, only string, level, name, v int) error {
	if only == "tcp" && !c.isTCP() {
		return c.opErr(op, syscall.EOPNOTSUPP)
	}
	if err := c.fd.sockopt(level, name, v); err != nil {
		return c.opErr(op, err)
	}
	return nil
}

func (c *Conn) isTCP() bool { return c.net != "unix" }

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// Hub returns the hub the conn waits on.
func (c *Conn) Hub() *poller.Hub { return c.fd.hub() }

// SyscallConn returns a raw conn whose Read and Write wait through the hub.
func (c *Conn) SyscallConn() (syscall.RawConn, error) { return rawConn{c}, nil }

// rawConn implements syscall.RawConn over a hub conn.
type rawConn struct{ c *Conn }

// Control runs f on the fd, which stays open while f runs.
func (r rawConn) Control(f func(fd uintptr)) error {
	err := r.c.fd.control(func(fd int) error { f(uintptr(fd)); return nil })
	if err != nil {
		return r.c.localOpErr("raw-control", err)
	}
	return nil
}

// Read calls f until it returns true, waiting for readability on the hub
// each time it returns false.
func (r rawConn) Read(f func(fd uintptr) (done bool)) error {
	if err := r.c.fd.rawRead(f); err != nil {
		return r.c.opErr("raw-read", err)
	}
	return nil
}

// Write calls f until it returns true, waiting for writability on the hub
// each time it returns false.
func (r rawConn) Write(f func(fd uintptr) (done bool)) error {
	if err := r.c.fd.rawWrite(f); err != nil {
		return r.c.opErr("raw-write", err)
	}
	return nil
}

// ErrNotSocket is wrapped, in a *net.OpError, by NewConn, NewConnHub,
// WrapListener and WrapListenerHub for a conn or listener whose socket they
// cannot reach: neither a package net TCP or unix one nor a hub one.
var ErrNotSocket = errors.New("transport: cannot move this conn onto a hub")

// NewConn moves an established *net.TCPConn or *net.UnixConn onto hub h (nil
// means poller.Default()). It duplicates the fd: the caller still owns c and
// may close it; the returned conn has its own fd. A *Conn already on h is
// returned as it is.
func NewConn(h *poller.Hub, c net.Conn) (net.Conn, error) {
	hc, err := NewConnHub(h, c)
	if err != nil {
		return nil, err
	}
	return hc, nil
}

// NewConnHub is NewConn returning the concrete type.
func NewConnHub(h *poller.Hub, c net.Conn) (*Conn, error) {
	if h == nil {
		h = poller.Default()
	}
	var network string
	switch c := c.(type) {
	case *Conn:
		if c.Hub() == h {
			return c, nil
		}
		network = c.net
	case *net.TCPConn:
		network = "tcp"
	case *net.UnixConn:
		network = "unix"
	case nil:
		return nil, &net.OpError{Op: "adopt", Err: fmt.Errorf("%w: a nil conn", ErrNotSocket)}
	default:
		// c's own addresses are only named if they are a socket's.
		err := fmt.Errorf("%w: a %T (want *net.TCPConn or *net.UnixConn)", ErrNotSocket, c)
		return nil, &net.OpError{Op: "adopt", Net: addrNetwork(c.LocalAddr()), Source: sockAddr(c.LocalAddr()), Addr: sockAddr(c.RemoteAddr()), Err: err}
	}
	opErr := func(err error) error {
		return &net.OpError{Op: "adopt", Net: network, Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	fd, err := moveFD(h, c.(syscall.Conn), false)
	if err != nil {
		return nil, opErr(err)
	}
	if hc, ok := c.(*Conn); ok {
		// The admission slot moves with the socket: closing the old conn,
		// as its owner will, must not release it.
		fd.adopt(hc.fd.takeSlot())
	}
	return newConn(fd, network, c.LocalAddr(), c.RemoteAddr()), nil
}

// sockAddr returns a if it is a *net.TCPAddr or *net.UnixAddr, else nil:
// the address types a hub error names, as package net's do.
func sockAddr(a net.Addr) net.Addr {
	switch a := a.(type) {
	case *net.TCPAddr:
		if a != nil {
			return a
		}
	case *net.UnixAddr:
		if a != nil {
			return a
		}
	}
	return nil
}

// addrNetwork is a.Network(), or "" for a nil a.
func addrNetwork(a net.Addr) string {
	if a == nil {
		return ""
	}
	return a.Network()
}

// moveFD registers a duplicate of a socket's fd with h (as a listener's,
// see registerFD, if listener is set); the original stays its owner's.
func moveFD(h *poller.Hub, sc syscall.Conn, listener bool) (*netFD, error) {
	if err := h.Err(); err != nil {
		return nil, err
	}
	s, err := dupFD(sc)
	if err != nil {
		return nil, err
	}
	return registerFD(h, s, listener)
}
