package transport

import "net"

// Beneath returns the first conn among c and those it wraps that is a T,
// following NetConn methods (as *tls.Conn, grpcopt.Conn and most wrappers
// offer them) a bounded number of levels down. Beneath[*transport.Conn]
// tells whether a conn a server was handed is on a hub.
func Beneath[T any](c net.Conn) (T, bool) {
	for range 16 { // a bound, in case a NetConn returns its receiver
		if t, ok := c.(T); ok {
			return t, true
		}
		u, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			break
		}
		c = u.NetConn()
	}
	var zero T
	return zero, false
}
