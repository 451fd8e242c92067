package grpcopt

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"golang.org/x/net/http/httpproxy"
	"google.golang.org/grpc"

	"github.com/hubio/hubio/internal/deadline"
)

// proxyUserAgent is the User-Agent of a CONNECT request: grpc-go's own
// ("grpc-go/" and its version). grpc.WithUserAgent's prefix cannot be seen
// from a dialer, so it is not sent.
const proxyUserAgent = "grpc-go/" + grpc.Version

// proxyDefaultPort is the port of a proxy URL that names none: grpc-go
// resolves the proxy host with its dns resolver, whose default port is 443.
const proxyDefaultPort = "443"

// dialFunc connects to network, address without a proxy: on the hub, or
// with package net where hubs are unsupported.
type dialFunc func(ctx context.Context, network, address string) (net.Conn, error)

// proxyFor returns the URL of the HTTP CONNECT proxy for a dial to network,
// address, or nil to dial directly. The rules are grpc-go's for its own
// dialer: TCP only, unless c.NoProxy; HTTPS_PROXY (or https_proxy) names the
// proxy and NO_PROXY (or no_proxy) the exceptions, as for an https URL to
// address; "localhost" and loopback addresses are never proxied. grpc-go
// reads the environment once per process (net/http's ProxyFromEnvironment);
// this reads it at every dial.
func (c Config) proxyFor(network, address string) (*url.URL, error) {
	if c.NoProxy || network != "tcp" {
		return nil, nil
	}
	return httpproxy.FromEnvironment().ProxyFunc()(&url.URL{Scheme: "https", Host: address})
}

// dialProxied connects to network, address through the proxy that
// proxyFor names, or directly with direct when it names none. Through a
// proxy, it dials the proxy's host with direct (so the conn to the proxy is
// on the hub) and runs the CONNECT handshake over that conn; c.DialTimeout
// then bounds both.
func (c Config) dialProxied(ctx context.Context, network, address string, direct dialFunc) (net.Conn, error) {
	proxy, err := c.proxyFor(network, address)
	if err != nil {
		return nil, &net.OpError{Op: "proxyconnect", Net: network, Err: err}
	}
	if proxy == nil {
		return direct(ctx, network, address)
	}
	if c.DialTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, c.DialTimeout)
		defer cancel()
	}
	proxyAddr := proxy.Host
	if proxy.Port() == "" {
		proxyAddr = net.JoinHostPort(proxy.Hostname(), proxyDefaultPort)
	}
	conn, err := direct(ctx, "tcp", proxyAddr)
	if err != nil {
		return nil, &net.OpError{Op: "proxyconnect", Net: "tcp", Err: err}
	}
	return proxyHandshake(ctx, conn, address, proxy.User)
}

// proxyHandshake sends an HTTP CONNECT request for target over conn, the
// conn to the proxy, with grpc-go's User-Agent and, when user is set, a
// Proxy-Authorization header with user's name and password (Basic), and
// reads the proxy's response. Only a 200 opens the tunnel. It returns conn
// itself, unless the response arrived with bytes from the server behind the
// proxy: those are kept in an aheadConn, read first. On error, conn is
// closed. ctx bounds the handshake through conn's deadline, which is
// cleared on success.
func proxyHandshake(ctx context.Context, conn net.Conn, target string, user *url.Userinfo) (_ net.Conn, err error) {
	defer func() {
		if err != nil {
			if ctx.Err() == context.Canceled {
				err = context.Canceled
			}
			err = &net.OpError{Op: "proxyconnect", Net: "tcp", Source: conn.LocalAddr(), Addr: conn.RemoteAddr(), Err: err}
			conn.Close()
		}
	}()
	if d, ok := ctx.Deadline(); ok {
		if err := conn.SetDeadline(d); err != nil {
			return nil, err
		}
	}
	// A context that ends wakes the handshake through a deadline in the
	// past. Once stop reports the callback started, the callback owns the
	// conn's deadline: the handshake counts as failed.
	stop := context.AfterFunc(ctx, func() { conn.SetDeadline(deadline.Passed) })

	// The request is written by net/http, as grpc-go writes it, so that a
	// proxy sees the same bytes from either.
	req := &http.Request{
		Method: http.MethodConnect,
		URL:    &url.URL{Host: target},
		Header: http.Header{"User-Agent": {proxyUserAgent}},
	}
	if user != nil {
		pass, _ := user.Password()
		cred := base64.StdEncoding.EncodeToString([]byte(user.Username() + ":" + pass))
		req.Header.Set("Proxy-Authorization", "Basic "+cred)
	}
	if err := req.Write(conn); err != nil {
		stop()
		return nil, err
	}
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, req)
	// resp.Body is never read or closed (closing drains it): a refusal's
	// body could stall past ctx, which cannot reach the conn once stop
	// has returned, and a 2xx response to CONNECT has no body (RFC
	// 9110, 9.3.6: a client ignores its Content-Length), so what follows
	// its header is the tunnel's.
	if !stop() {
		return nil, errors.Join(context.Cause(ctx), err)
	}
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("proxy refused CONNECT %s: %s", target, resp.Status)
	}
	if err := conn.SetDeadline(time.Time{}); err != nil {
		return nil, err
	}
	if n := br.Buffered(); n > 0 {
		ahead, _ := br.Peek(n)
		return &aheadConn{Conn: conn, ahead: append([]byte(nil), ahead...)}, nil
	}
	return conn, nil
}

// aheadConn is a conn through a proxy whose CONNECT response came with
// bytes from the server behind it, read before the conn's own (grpc-go's
// bufConn does the same). grpc-go reads a conn from one goroutine only, and
// ahead is that goroutine's: Read alone touches it. It offers no
// ReadOnReady: a conn that already holds bytes is read the ordinary way.
type aheadConn struct {
	net.Conn
	ahead []byte // bytes not yet returned by Read
}

// Read returns the bytes read ahead first, then reads the conn.
func (c *aheadConn) Read(b []byte) (int, error) {
	if len(c.ahead) == 0 {
		return c.Conn.Read(b)
	}
	n := copy(b, c.ahead)
	c.ahead = c.ahead[n:]
	return n, nil
}
