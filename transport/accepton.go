package transport

import (
	"net"

	"github.com/hubio/hubio/poller"
)

// AcceptOn is AcceptConn registering the accepted conn with the hub pick
// returns instead of the listener's hub. The accept itself waits on the
// listener's hub; pick is called on the calling goroutine once a
// connection has been accepted, so it sees the hubs as they are then (a
// poller.Group's Next, typically), and the new socket is registered once,
// with the hub it returns: spreading a listener's conns across hubs costs
// no extra syscall. A nil pick means the listener's hub. If the picked hub
// has closed, the accepted socket is closed and the hub's close error
// (matching net.ErrClosed) is returned inside a *net.OpError; the listener
// itself goes on.
func (l *Listener) AcceptOn(pick func() *poller.Hub) (*Conn, error) {
	if pick == nil {
		pick = l.fd.hub
	}
	fd, laddr, raddr, err := l.fd.acceptOn(pick, l.net == "unix")
	if err != nil {
		return nil, &net.OpError{Op: "accept", Net: l.net, Addr: l.addr, Err: err}
	}
	return newConn(fd, l.net, laddr, raddr), nil
}
