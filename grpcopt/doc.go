// Package grpcopt puts grpc-go servers and clients on a hub with one option
// each.
//
//	srv := grpc.NewServer(grpcopt.ServerOption(nil, nil)) // insecure, default hub
//	cc, err := grpc.NewClient(target,
//		grpc.WithTransportCredentials(insecure.NewCredentials()),
//		grpcopt.DialOption(nil))
//
// ServerOption wraps any inner credentials (TLS, ALTS, ...): each accepted
// conn is moved onto the hub first, then the inner handshake runs over it.
// Listen is a drop-in for net.Listen whose conns are born on the hub; it
// works with or without ServerOption. DialOption is a context dialer.
// Config.ServerOptions and Config.DialOptions also carry the keepalive
// parameters, so that grpc-go and the hub conns get them from one value.
//
// ServerOption looks through listener wrappers that only act around Close
// or socket options (etcd's and netutil.LimitListener's conns) and never
// through one that changes the byte stream; a conn left off the hub is
// counted in ServerStats.OffHub and logged once per server, or refused with
// Config.RequireHub (counted in ServerStats.Refused, the first logged at
// error level). It recognises a wrapper it may look through by reflection
// (one embedded conn, no Read, Write or deadline setter of its own), or,
// for a wrapper that reflection cannot judge, because the wrapper says so
// by implementing Bypassable (BypassConn returns the conn whose Read, Write
// and deadlines it passes through unchanged).
//
// To see that a server's conns are on the hub: Hub.Stats().Conns counts
// the conns a hub holds now (Registered counts its listeners too), and
// ServerStats counts what the credentials did with each conn, for the
// whole process (ReadServerStats) or for the servers of one Config
// (Config.Stats).
//
// # What grpc-go and package net do only for their own conn types
//
// grpc-go v1.85 and package net treat *net.TCPConn (and the other package
// net socket types) specially in these places; for each, what hubio does:
//
//   - TCP_USER_TIMEOUT (grpc-go internal/syscall.SetTCPUserTimeout, from the
//     server's keepalive Timeout, 20 s by default since the server's Time is
//     2 h, and the client's when its keepalive Time is not infinite): set
//     on every TCP hub conn from Config.ServerKeepalive (20 s when nil) and
//     Config.ClientKeepalive (none when nil), or Config.UserTimeout. Out of
//     range and negative values fail the side that reads them
//     (ServerOptions and Listen, or DialOptions), and are clamped or
//     dropped with a warning by ServerOption, Credentials and DialOption.
//     Keepalive set the grpc-go way instead (grpc.KeepaliveParams,
//     grpc.WithKeepaliveParams) reaches grpc-go only: hub server conns
//     then get 20 s, hub client conns none (see the README).
//   - The non-pinning read path (grpc-go readyreader, ReadOnReady, which
//     holds no buffer on an idle conn): *Conn implements ReadOnReady, also
//     while ServerOption watches the connection timeout. A conn behind TLS
//     reads through the TLS conn, as in grpc-go.
//   - grpc.ConnectionTimeout (a deadline on the raw conn, cleared on it):
//     ServerOption keeps it on the hub conn by watching the raw socket's
//     deadline, also beneath a bypassed wrapper, and by timing that
//     deadline itself for a conn accepted on a group hub that has since
//     closed (the conn is moved to a live hub; when the timeout passes
//     before the preface, it is closed, and grpc-go's read sees
//     net.ErrClosed rather than a timeout).
//   - Channelz socket options (channelz.GetSocketOption, which needs
//     syscall.Conn): *Conn has SyscallConn, so channelz reads the hub
//     socket's options; TLS keeps it through grpc-go's WrapSyscallConn.
//   - TCP_NODELAY (package net sets it on every TCP conn) and TCP
//     keepalive probes (package net's 15 s default): package transport sets
//     both on accepted and dialed hub conns.
//   - net.Buffers.WriteTo uses writev only for package net conns:
//     transport.Conn.WriteBuffers does the same on a hub conn. grpc-go
//     writes through its own buffer and does not use it.
//   - grpc-go's GetTCPUserTimeout (tests only) and its rusage helpers
//     (benchmarks, process-wide) need nothing.
//
// DialOption goes through an HTTP CONNECT proxy by grpc-go's rules, which
// grpc-go itself applies only to its own dialer: HTTPS_PROXY (or
// https_proxy) names the proxy, NO_PROXY (or no_proxy) the exceptions,
// "localhost", loopback addresses and unix sockets are never proxied, and
// Config.NoProxy turns it off as grpc.WithNoProxy does (which a dialer
// cannot see). The conn to the proxy is a hub conn; the CONNECT request is
// the one grpc-go writes (the address as the dialer got it, User-Agent
// "grpc-go/" and its version, Basic Proxy-Authorization from the URL's
// user and password), and a response other than 200 fails the dial with a
// *net.OpError whose Op is "proxyconnect". As in grpc-go, the proxy URL's
// scheme is not used (the CONNECT is plaintext to its host, port 443 if it
// names none). Two differences remain. The environment is read at each
// dial, where grpc-go reads it once per process. And grpc-go hands a custom
// dialer resolved addresses: for a "dns" target (grpc.NewClient's
// default), the client resolves the name itself and asks the proxy for the
// resolved address (grpc-go does so only with grpc.WithLocalDNSResolution),
// and NO_PROXY is matched against that address, not the name. Where the
// proxy must resolve the name, dial "passthrough:///host:port": the dialer,
// and then the proxy, receive "host:port" as it is.
//
// Config.Admission makes Listen's listeners decide which conns they take
// (limits in total and per peer, accept pacing, shedding by loop delay; see
// transport.AdmissionPolicy): a refused conn is reset before grpc-go sees
// it, and a paused listener leaves conns in the kernel backlog.
//
// Where hubs are unsupported (not Linux), every option falls back to
// package net: ServerOption is grpc.Creds(inner), Listen is net.Listen and
// DialOption dials with a net.Dialer (through the proxy as above).
package grpcopt
