package transport

import (
	"net"

	"github.com/hubio/hubio/poller"
)

// AcceptOn is AcceptConn registering the accepted conn with hub h instead
// of the listener's hub (nil means the listener's). The accept itself waits
// on the listener's hub; the new socket is registered once, with h, so
// spreading a listener's conns across the hubs of a poller.Group costs no
// extra syscall. If h has closed, the accepted socket is closed and the
// hub's close error (matching net.ErrClosed) is returned inside a
// *net.OpError; the listener itself goes on.
func (l *Listener) AcceptOn(h *poller.Hub) (*Conn, error) {
	if h == nil {
		h = l.fd.hub()
	}
	fd, laddr, raddr, err := l.fd.acceptOn(h, l.net == "unix")
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: l.net, Addr: l.addr, Err: err}
	}
	return newConn(fd, l.net, laddr, raddr), nil
}
