package grpcopt

import (
	"context"
	"fmt"
	"net"

	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// Credentials returns the transport credentials behind Config.ServerOption,
// for servers that build their options themselves (or combine credentials).
// Like ServerOption, it never panics: a server-side duration ServerOptions
// would refuse is dropped or clamped, with a warning naming the field.
func (c Config) Credentials(inner credentials.TransportCredentials) credentials.TransportCredentials {
	c = c.forServer()
	if inner == nil {
		inner = insecure.NewCredentials()
	}
	return &creds{cfg: c, inner: inner, logged: new(logOnce)}
}

// creds moves accepted conns onto a hub, then hands them to inner.
type creds struct {
	cfg   Config
	inner credentials.TransportCredentials
	// logged is shared by clones (see logOnce).
	logged *logOnce
}

// ClientHandshake is inner's: these credentials move server conns only.
func (c *creds) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return c.inner.ClientHandshake(ctx, authority, conn)
}

// ServerHandshake moves raw's socket onto the hub (unless it already is a
// conn of this hub), from beneath raw's wrappers where they can be
// bypassed, then runs inner's handshake over the hub conn. grpc-go calls it
// from the goroutine serving the new conn, with raw's deadline set to the
// server's connection timeout.
//
// The steps, in order, and where each is written:
//   - owns (below): a conn of this hub is handed to inner as it is;
//   - socketBeneath (unwrap.go): the socket beneath raw's wrappers, or
//     none, and the conn stays off the hub (offHub, stats.go);
//   - a conn of this hub beneath a bypassable wrapper is read directly;
//   - otherwise pickHub (config.go) picks the hub, the socket is moved
//     onto it (transport.NewConnHub) and wrapped (Config.wrap);
//   - newGuard (guard.go) keeps grpc.ConnectionTimeout on the hub conn
//     while inner's handshake runs and grpc-go reads the client preface.
func (c *creds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	if c.cfg.unsupported() {
		return c.inner.ServerHandshake(raw)
	}
	c.count(cHandshakes)
	if c.cfg.owns(raw) {
		// Accepted by Listen on this hub (maybe behind a wrapper, such as
		// testutil's fault injector, which must stay in the path):
		// grpc-go's deadlines reach it, so it is handed on as it is.
		return c.inner.ServerHandshake(raw)
	}
	sock, why := socketBeneath(raw)
	if sock == nil {
		return c.offHub(raw, why)
	}
	wrapped := sock != raw
	if wrapped {
		c.count(cUnwrapped)
		if hc := hubConn(sock); hc != nil && c.cfg.ownsHub(hc.Hub()) {
			// A Listen conn of this hub behind a limiting wrapper: read it
			// directly, close it through the wrapper. grpc-go's deadlines
			// reach it through the wrapper's promoted setters.
			return c.inner.ServerHandshake(&Conn{Conn: hc, outer: raw})
		}
	}
	src := sock
	if hc, ok := sock.(*Conn); ok {
		src = hc.Conn // a hub conn of another hub: move its socket
	}
	h := c.cfg.pickHub()
	moved, err := transport.NewConnHub(h, src)
	if err != nil {
		err = fmt.Errorf("grpcopt: moving the accepted conn onto the hub: %w", err)
		if h.Err() != nil {
			c.hubClosed(err)
		}
		return nil, nil, err
	}
	hc := c.cfg.wrap(moved, c.cfg.serverUserTimeout(), true)
	if wrapped {
		hc.outer = raw
	}
	g := newGuard(raw, sock, hc, wrapped)
	conn, auth, err := c.inner.ServerHandshake(hc)
	if err == credentials.ErrConnDispatched {
		// inner owns the hub conn, and grpc-go leaves raw alone: release
		// raw's fd (a wrapper stays, the hub conn closes it).
		g.stop()
		return nil, nil, err
	}
	if err != nil {
		g.stop()
		// grpc-go closes raw itself (and with it a wrapper): close only
		// the hub conn, so a wrapper is closed once.
		hc.Conn.Close()
		return nil, nil, err
	}
	return g.watch(conn), auth, nil
}

// owns reports whether raw already lives where the credentials would move
// it: on the Config's hub, or with a Group on any of its live hubs (a conn
// on a hub that has closed is moved to a live one, and fails there if none
// is left).
func (c Config) owns(raw net.Conn) bool { return c.ownsHub(hubOf(raw)) }

// ownsHub reports whether h is the Config's hub or, with a Group, one of the
// group's live hubs.
func (c Config) ownsHub(h *poller.Hub) bool {
	if h == nil {
		return false
	}
	if c.Group == nil {
		return h == c.singleHub()
	}
	if h.Err() != nil {
		return false
	}
	for _, gh := range c.Group.Hubs() {
		if gh == h {
			return true
		}
	}
	return false
}

// hubOf returns the hub of a hub conn, or of the hub conn c wraps (through
// NetConn); nil if there is none.
func hubOf(c net.Conn) *poller.Hub {
	if hc, ok := transport.Beneath[*transport.Conn](c); ok {
		return hc.Hub()
	}
	return nil
}

// hubConn returns c's *transport.Conn if c is a hub conn.
func hubConn(c net.Conn) *transport.Conn {
	switch hc := c.(type) {
	case *Conn:
		return hc.Conn
	case *transport.Conn:
		return hc
	}
	return nil
}

// Info returns inner's protocol info.
func (c *creds) Info() credentials.ProtocolInfo { return c.inner.Info() }

// Clone clones inner too; the clone shares the once-only warnings.
func (c *creds) Clone() credentials.TransportCredentials {
	return &creds{cfg: c.cfg, inner: c.inner.Clone(), logged: c.logged}
}

// OverrideServerName is inner's.
//
// Deprecated: as for credentials.TransportCredentials.
func (c *creds) OverrideServerName(name string) error {
	return c.inner.OverrideServerName(name) //nolint:staticcheck // delegating a deprecated method
}
