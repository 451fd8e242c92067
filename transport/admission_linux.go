package transport

import (
	"net/netip"
	"syscall"

	"github.com/hubio/hubio/poller"
)

// registration returns the fd's hub registration.
func (fd *netFD) registration() *poller.Registration { return fd.reg }

// sockaddrAddr returns the IP address of an accepted peer; the zero Addr
// for a unix peer.
func sockaddrAddr(sa syscall.Sockaddr) netip.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return netip.AddrFrom4(sa.Addr)
	case *syscall.SockaddrInet6:
		return netip.AddrFrom16(sa.Addr)
	}
	return netip.Addr{}
}

// refuseFD closes a refused conn with a reset: SO_LINGER with a zero
// timeout makes close(2) send RST and drop the socket at once. The client
// then fails at its first read or write (ECONNRESET, which grpc-go reports
// as Unavailable and answers by trying its next address or backing off),
// and the server keeps no TIME_WAIT socket for it, so that a storm of
// refused conns leaves nothing behind. A FIN would mostly become a reset
// anyway (a gRPC client has sent its preface by the time the server
// closes, and closing with unread data resets) but would cost a TIME_WAIT
// socket each.
func refuseFD(s int) {
	syscall.SetsockoptLinger(s, syscall.SOL_SOCKET, syscall.SO_LINGER, &syscall.Linger{Onoff: 1, Linger: 0})
	syscall.Close(s)
}
