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
//
// Conns handed to grpc-go are *Conn values, which implement grpc-go's
// non-pinning ReadOnReady read path, so an idle conn holds no read buffer.
// TCP_USER_TIMEOUT, which grpc-go sets from keepalive parameters only on a
// *net.TCPConn, is carried by Config.UserTimeout.
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
// Where hubs are unsupported (not Linux), every option falls back to
// package net: ServerOption is grpc.Creds(inner), Listen is net.Listen and
// DialOption dials with a net.Dialer (through the proxy as above).
package grpcopt
