package transport

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/hubio/hubio/poller"
)

// Listener is a TCP or unix listener whose Accept waits on a hub. Accepted
// conns are *Conn values on the same hub, with TCP_NODELAY and keepalive set
// as package net sets them.
//
// Close, from any goroutine, wakes a blocked Accept at once with
// net.ErrClosed. EMFILE and ENFILE (no fds left) come back from Accept as
// errors whose Temporary() is true, so servers back off and retry.
type Listener struct {
	// fd, net, addr and unlink are immutable once ListenHub or
	// WrapListenerHub has returned the Listener.
	fd   *netFD
	net  string // "tcp" or "unix"
	addr net.Addr
	// unlink is the unix socket path removed on Close; empty when this
	// listener does not own the path.
	unlink string
	// unlinkOnce makes the first Close, of any goroutine, the one that
	// removes unlink.
	unlinkOnce sync.Once
}

var _ net.Listener = (*Listener)(nil)

// Listen announces on the local network address, as net.Listen does, with
// the same address syntax, SO_REUSEADDR, and *net.OpError errors, for the
// networks "tcp", "tcp4", "tcp6" and "unix" (Linux abstract names start
// with '@'). Accepted conns wait on hub h; nil means poller.Default().
// Closing the listener removes the unix socket file it created. Other
// networks fail as they fail in net.Listen, except "unixpacket" and
// "unixgram", which package net accepts and Listen refuses with an error
// matching errors.ErrUnsupported (a hub conn is a byte stream).
func Listen(h *poller.Hub, network, address string) (net.Listener, error) {
	l, err := ListenHub(h, network, address)
	if err != nil {
		return nil, err
	}
	return l, nil
}

// errNotStream refuses unix networks other than "unix": a hub conn is a byte
// stream, and datagram or packet sockets would lose message boundaries.
var errNotStream = fmt.Errorf("transport: only stream sockets (tcp, unix) go on a hub: %w", errors.ErrUnsupported)

// ListenHub is Listen returning the concrete type.
func ListenHub(h *poller.Hub, network, address string) (*Listener, error) {
	if h == nil {
		h = poller.Default()
	}
	switch network {
	case "tcp", "tcp4", "tcp6", "unix":
	case "unixpacket", "unixgram":
		// Package net listens on these; the hub carries byte streams only.
		return nil, &net.OpError{Op: "listen", Net: network, Err: errNotStream}
	default:
		return nil, listenNetworkError(network, address)
	}
	if err := h.Err(); err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	// Package net creates the socket: address parsing, resolution,
	// dual-stack and SO_REUSEADDR are exactly the standard library's. The
	// hub takes a duplicate of the fd and the original is closed.
	std, err := net.Listen(network, address)
	if err != nil {
		return nil, err
	}
	l, err := wrapListener(h, std)
	if ul, ok := std.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
		if err == nil && address != "" && address[0] != '@' {
			l.unlink = std.Addr().String()
		}
	}
	std.Close()
	if err != nil {
		if ul, ok := std.(*net.UnixListener); ok && address != "" && address[0] != '@' {
			os.Remove(ul.Addr().String())
		}
		return nil, err
	}
	return l, nil
}

// listenNetworkError is net.Listen's error for a network other than the
// stream ones, produced as package net produces it but without asking
// net.Listen: an UnknownNetworkError for a network it does not know, the
// resolver's error for an address it cannot resolve, else an AddrError
// naming the resolved (datagram or raw IP) address.
func listenNetworkError(network, address string) error {
	opErr := func(addr net.Addr, err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: addr, Err: err}
	}
	var addr net.Addr
	afnet := network
	if i := strings.LastIndexByte(network, ':'); i >= 0 {
		afnet = network[:i]
	}
	switch {
	case network == "udp" || network == "udp4" || network == "udp6":
		a, err := net.ResolveUDPAddr(network, address)
		if err != nil {
			return opErr(nil, err)
		}
		addr = a
	case afnet != network && (afnet == "ip" || afnet == "ip4" || afnet == "ip6"):
		// Raw IP needs a protocol ("ip4:icmp") to be listened on.
		a, err := net.ResolveIPAddr(network, address)
		if err != nil {
			return opErr(nil, err)
		}
		addr = a
	default:
		return opErr(nil, net.UnknownNetworkError(network))
	}
	return opErr(addr, &net.AddrError{Err: "unexpected address type", Addr: address})
}

// WrapListener moves an existing *net.TCPListener or *net.UnixListener onto
// hub h (nil means poller.Default()) by duplicating its fd. The caller still
// owns l and may close it; the unix socket file is left to l's own Close.
// A *Listener already on h is returned as it is.
func WrapListener(h *poller.Hub, l net.Listener) (net.Listener, error) {
	hl, err := WrapListenerHub(h, l)
	if err != nil {
		return nil, err
	}
	return hl, nil
}

// WrapListenerHub is WrapListener returning the concrete type.
func WrapListenerHub(h *poller.Hub, l net.Listener) (*Listener, error) {
	if h == nil {
		h = poller.Default()
	}
	if hl, ok := l.(*Listener); ok && hl.fd.hub() == h {
		return hl, nil
	}
	return wrapListener(h, l)
}

func wrapListener(h *poller.Hub, l net.Listener) (*Listener, error) {
	var network string
	switch l := l.(type) {
	case *net.TCPListener:
		network = "tcp"
	case *net.UnixListener:
		network = "unix"
	case *Listener:
		network = l.net
	case nil:
		return nil, &net.OpError{Op: "listen", Err: fmt.Errorf("%w: a nil listener", ErrNotSocket)}
	default:
		err := fmt.Errorf("%w: a %T (want *net.TCPListener or *net.UnixListener)", ErrNotSocket, l)
		return nil, &net.OpError{Op: "listen", Net: addrNetwork(l.Addr()), Addr: sockAddr(l.Addr()), Err: err}
	}
	opErr := func(err error) error {
		return &net.OpError{Op: "listen", Net: network, Addr: l.Addr(), Err: err}
	}
	fd, err := moveFD(h, l.(syscall.Conn), true)
	if err != nil {
		return nil, opErr(err)
	}
	return &Listener{fd: fd, net: network, addr: l.Addr()}, nil
}

// Accept waits for and returns the next connection.
func (l *Listener) Accept() (net.Conn, error) {
	c, err := l.AcceptHub()
	if err != nil {
		return nil, err
	}
	return c, nil
}

// AcceptHub is Accept returning the concrete type.
func (l *Listener) AcceptHub() (*Conn, error) {
	return l.AcceptHubOn(nil)
}

// AcceptHubOn is AcceptHub registering the accepted conn with the hub pick
// returns instead of the listener's hub. The accept itself waits on the
// listener's hub; pick is called on the calling goroutine once a
// connection has been accepted, so it sees the hubs as they are then (a
// poller.Group's Next, typically), and the new socket is registered once,
// with the hub it returns: spreading a listener's conns across hubs costs
// no extra syscall. A nil pick means the listener's hub. If the picked hub
// has closed, the accepted socket is closed and the hub's close error
// (matching net.ErrClosed) is returned inside a *net.OpError; the listener
// itself goes on.
func (l *Listener) AcceptHubOn(pick func() *poller.Hub) (*Conn, error) {
	if pick == nil {
		pick = l.fd.hub
	}
	fd, laddr, raddr, err := l.fd.acceptConn(pick, l.net == "unix")
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: l.net, Addr: l.addr, Err: err}
	}
	return newConn(fd, l.net, laddr, raddr), nil
}

// Addr returns the listener's address: a *net.TCPAddr or *net.UnixAddr.
func (l *Listener) Addr() net.Addr { return l.addr }

// Close stops listening; a blocked Accept returns net.ErrClosed. A unix
// socket file created by Listen is removed first, as net.UnixListener does.
func (l *Listener) Close() error {
	l.unlinkOnce.Do(func() {
		if l.unlink != "" {
			os.Remove(l.unlink)
		}
	})
	if err := l.fd.Close(); err != nil {
		return &net.OpError{Op: "close", Net: l.net, Addr: l.addr, Err: err}
	}
	return nil
}

// SetDeadline sets a deadline for Accept; the zero time means none.
func (l *Listener) SetDeadline(t time.Time) error {
	if err := l.fd.setDeadline(t, true, false); err != nil {
		return &net.OpError{Op: "set", Net: l.net, Addr: l.addr, Err: err}
	}
	return nil
}

// SyscallConn returns a raw conn for the listening socket (its Read waits
// for a pending connection through the hub), as *net.TCPListener has.
func (l *Listener) SyscallConn() (syscall.RawConn, error) {
	return rawConn{&Conn{fd: l.fd, net: l.net, laddr: l.addr}}, nil
}

// Hub returns the hub the listener waits on.
func (l *Listener) Hub() *poller.Hub { return l.fd.hub() }
