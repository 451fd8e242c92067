// Package transport provides net.Conn, net.Listener and a Dialer whose every
// wait for readiness — read, write, accept, connect — parks on a hub
// (package poller) instead of the Go runtime poller.
//
// A hub conn behaves as a standard one: Read and Write run in the caller's
// goroutine and do their own syscalls (the hub only says "ready"); partial
// writes are completed; io.EOF marks an orderly shutdown; deadlines fail
// calls with os.ErrDeadlineExceeded (Timeout() true), also when moved while
// a call is blocked; Close unblocks every blocked call with net.ErrClosed
// and closes the socket once the last call in flight has left (the fd is
// reference-counted, as internal/poll does, so it is never used after its
// number could have been reused); errors are *net.OpError values wrapping
// the standard sentinels and syscall.Errno. TCP conns get TCP_NODELAY and
// keepalive (15 s) as package net sets them.
//
// One read(2) per message on TCP: a Read whose read(2) returned fewer bytes
// than asked for has emptied the socket's receive queue (epoll(7)), so the
// next Read waits for the hub's next event before it reads, instead of
// making a read(2) that would only say EAGAIN, as package net does (Tokio
// and libuv apply the same rule). A FIN, an error or urgent data that
// arrived meanwhile is still seen: the hub notes it on the conn's
// registration (poller.Registration.Exceptional) before it wakes anyone.
// Unix sockets keep reading until EAGAIN: their reads also stop short at a
// message that carries fds. A conn whose SO_RCVLOWAT was raised by hand
// then waits for that many bytes after a short read, as epoll reports them.
//
// Listen lets package net create the listening socket (so address syntax,
// resolution, dual-stack and SO_REUSEADDR are exactly the standard
// library's) and moves a duplicate of its fd onto the hub. WrapListener and
// NewConn move existing sockets the same way. Accept uses accept4
// (non-blocking, close-on-exec), retries ECONNABORTED, and reports EMFILE
// and ENFILE as errors whose Temporary() is true.
//
// A Listener given an Admission (SetAdmission) decides in Accept which conns
// it takes: limits in total and per peer prefix, an allow-list, accept
// pacing, and pausing while its hub's loop delay is high. A refused conn is
// reset at once; a paused listener leaves conns in the backlog. See
// AdmissionPolicy.
//
// Names follow one rule, as package net's ListenTCP, DialTCP and AcceptTCP
// do: the contract names return interfaces (Listen, WrapListener, NewConn,
// Dialer.Dial and DialContext, Listener.Accept), and each has a twin ending
// in "Hub" that returns the concrete type (ListenHub, WrapListenerHub,
// NewConnHub, Dialer.DialHub, Listener.AcceptHub); AcceptHubOn is AcceptHub
// with the hub chosen by the caller.
//
// A conn or listener that is garbage-collected unclosed is closed then, as
// package net's are: its fd is closed and its registration leaves the hub
// (the hub never keeps a conn reachable). Close them anyway: the collector
// may run late, or never.
//
// If a hub is closed, every call on its conns returns an error matching
// net.ErrClosed; the conns must still be closed to release their fds.
//
// Package transport has no grpc dependency; package grpcopt adds what
// grpc-go needs. Hub sockets need Linux: elsewhere every constructor
// returns an error matching errors.ErrUnsupported.
package transport
