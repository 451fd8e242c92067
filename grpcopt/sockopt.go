package grpcopt

import "sync/atomic"

// SockoptStats counts, for the whole process, the socket options these
// options set on hub conns that the kernel refused. Such options are
// best-effort, as grpc-go and package net treat them: the conn is served
// without the option, never dropped.
//
// TCP_USER_TIMEOUT is the one refused in practice: an MPTCP socket fails it
// with ENOPROTOOPT (Linux up to at least 6.18), and a server accepts MPTCP
// sockets whenever a client dials with MPTCP (net.Dialer.SetMultipathTCP,
// mptcpize, an MPTCP proxy), since package net listens with MPTCP by
// default. grpc-go ignores the same failure on a *net.TCPConn.
type SockoptStats struct {
	// ServerUserTimeout counts server conns (accepted by Listen, or moved
	// onto a hub by ServerOption's credentials) whose TCP_USER_TIMEOUT
	// could not be set.
	ServerUserTimeout uint64
	// ClientUserTimeout counts dialed conns whose TCP_USER_TIMEOUT could
	// not be set.
	ClientUserTimeout uint64
}

// sockoptStats holds the process's SockoptStats; any goroutine adds to it.
var sockoptStats struct{ serverUserTimeout, clientUserTimeout atomic.Uint64 }

// ReadSockoptStats returns the process's SockoptStats so far.
func ReadSockoptStats() SockoptStats {
	return SockoptStats{
		ServerUserTimeout: sockoptStats.serverUserTimeout.Load(),
		ClientUserTimeout: sockoptStats.clientUserTimeout.Load(),
	}
}

// sockoptRefused counts a TCP_USER_TIMEOUT the kernel refused, on a server
// conn or a dialed one.
func sockoptRefused(server bool) {
	if server {
		sockoptStats.serverUserTimeout.Add(1)
	} else {
		sockoptStats.clientUserTimeout.Add(1)
	}
}
