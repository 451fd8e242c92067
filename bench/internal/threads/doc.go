// Package threads is the design hubio rejected, kept as a benchmark
// baseline: a net.Conn and net.Listener over TCP sockets in blocking mode,
// whose Read, Write and Accept call read(2), write(2) and accept4(2)
// directly. Each blocked call holds an OS thread (the Go runtime hands the
// thread's P to another thread and parks the thread in the kernel), so a
// server with N idle connections holds about N OS threads: thread per
// socket.
//
// Only what grpc-go needs is implemented:
//
//   - Deadlines are not supported. SetDeadline, SetReadDeadline and
//     SetWriteDeadline do nothing and return nil. grpc-go sets a deadline on
//     an accepted conn during its handshake and clears it afterwards, so the
//     handshake here is unguarded by grpc.ConnectionTimeout.
//   - Close unblocks a blocked Read, Write or Accept: it calls
//     shutdown(SHUT_RDWR) first, and the fd itself is closed when the last
//     call in flight on it returns, so a blocked call never reads from a
//     reused fd number.
//   - TCP only (IPv4 and IPv6 literals); TCP_NODELAY is set on every conn,
//     as package net does.
//
// The package builds everywhere; outside Linux Listen and Dial return an
// error matching errors.ErrUnsupported.
package threads
