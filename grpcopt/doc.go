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
// Where hubs are unsupported (not Linux), every option falls back to
// package net: ServerOption is grpc.Creds(inner), Listen is net.Listen and
// DialOption dials with a net.Dialer.
package grpcopt
