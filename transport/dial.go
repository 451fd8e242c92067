package transport

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"syscall"
	"time"

	"github.com/hubio/hubio/poller"
)

// Dialer dials TCP and unix stream conns whose connect, and every wait
// after it, goes through a hub. Its zero value dials on poller.Default()
// with package net's defaults.
type Dialer struct {
	// Hub is the hub the conns wait on; nil means poller.Default().
	Hub *poller.Hub
	// Timeout bounds a dial, across all addresses tried; zero means none
	// beyond the context's.
	Timeout time.Duration
	// KeepAlive is the idle time before keepalive probes, as in
	// net.Dialer: zero means package net's default (15 s), negative leaves
	// keepalive off. It is ignored if KeepAliveConfig.Enable is true.
	KeepAlive time.Duration
	// KeepAliveConfig, if Enable is true, configures keepalive probes as
	// (*net.TCPConn).SetKeepAliveConfig does, as in net.Dialer.
	KeepAliveConfig net.KeepAliveConfig
	// LocalAddr, if set, is the local address to bind: a *net.TCPAddr or
	// *net.UnixAddr.
	LocalAddr net.Addr
	// Resolver looks up host names; nil means net.DefaultResolver.
	Resolver *net.Resolver
}

// Dial is DialContext with context.Background().
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address on network ("tcp", "tcp4", "tcp6" or
// "unix"), with net.Dial's address syntax. A host name's addresses are
// tried in turn, those of the first address's family first, as package
// net does, each with a fair share of the remaining time. Cancelling ctx
// aborts the dial; errors are *net.OpError values (errors.Is finds
// syscall.ECONNREFUSED, context.Canceled, ...).
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	c, err := d.DialHub(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c, nil
}

// DialHub is DialContext returning the concrete type.
func (d *Dialer) DialHub(ctx context.Context, network, address string) (*Conn, error) {
	h := d.Hub
	if h == nil {
		h = poller.Default()
	}
	opErr := func(raddr net.Addr, err error) error {
		return &net.OpError{Op: "dial", Net: network, Source: d.LocalAddr, Addr: raddr, Err: err}
	}
	if err := h.Err(); err != nil {
		return nil, opErr(nil, err)
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	addrs, err := d.resolve(ctx, network, address)
	if err != nil {
		return nil, opErr(nil, mapCtxErr(err))
	}
	ka := keepAliveSettings{d.KeepAlive, d.KeepAliveConfig}
	var first error
	netw := "tcp"
	if network == "unix" {
		netw = "unix"
	}
	for i, ra := range addrs {
		actx, cancel := partialDeadline(ctx, len(addrs)-i)
		c, err := d.dialOne(actx, h, network, netw, ra, ka)
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = opErr(ra, mapCtxErr(err))
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// keepAliveSettings are a dialer's or listener's keepalive fields, applied
// to each new TCP conn as package net applies them.
type keepAliveSettings struct {
	keepAlive time.Duration
	config    net.KeepAliveConfig
}

// mapCtxErr turns a context's own errors into package net's: "i/o timeout"
// (Timeout() true) for an expired deadline and "operation was canceled" for
// a cancel, each still matching its context error with errors.Is.
//
// Package net's timed-out dial matches either context.DeadlineExceeded or
// os.ErrDeadlineExceeded, depending on whether the context or its poller's
// deadline noticed first; a hub dial's matches both.
func mapCtxErr(err error) error {
	switch err {
	case context.DeadlineExceeded:
		return errDialTimeout
	case context.Canceled:
		return errDialCanceled
	}
	return err
}

var (
	errDialTimeout  error = timeoutError{}
	errDialCanceled error = canceledError{}
)

// timeoutError is package net's dial timeout error.
type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }
func (timeoutError) Is(target error) bool {
	return target == context.DeadlineExceeded || target == os.ErrDeadlineExceeded
}

// canceledError is package net's error for a cancelled dial.
type canceledError struct{}

func (canceledError) Error() string        { return "operation was canceled" }
func (canceledError) Is(target error) bool { return target == context.Canceled }

// dialOne connects to one address. As package net does, a TCP connect
// with an ephemeral local port is retried (twice at most) when it connected
// the socket to itself — TCP simultaneous open, when the target port is an
// unused ephemeral one on this host — or failed with a spurious
// EADDRNOTAVAIL.
func (d *Dialer) dialOne(ctx context.Context, h *poller.Hub, network, netw string, ra net.Addr, ka keepAliveSettings) (*Conn, error) {
	ephemeral := true
	if la, ok := d.LocalAddr.(*net.TCPAddr); ok && la.Port != 0 {
		ephemeral = false
	}
	for try := 0; ; try++ {
		fd, err := dialFD(ctx, h, network, ra, d.LocalAddr, ka)
		retry := netw == "tcp" && ephemeral && try < 2
		if err != nil {
			if retry && errors.Is(err, syscall.EADDRNOTAVAIL) && ctx.Err() == nil {
				continue
			}
			return nil, err
		}
		raddr := fd.remoteAddr(netw == "unix")
		if raddr == nil {
			raddr = ra
		}
		c := newConn(fd, netw, fd.localAddr(netw == "unix"), raddr)
		if retry && selfConnected(c) {
			c.Close()
			continue
		}
		return c, nil
	}
}

// selfConnected reports whether a TCP conn is connected to itself.
func selfConnected(c *Conn) bool {
	l, lok := c.laddr.(*net.TCPAddr)
	r, rok := c.raddr.(*net.TCPAddr)
	return !lok || !rok || l.Port == r.Port && l.IP.Equal(r.IP)
}

// partialDeadline gives one of n remaining addresses its share of the
// time left, at least 2 s where that much is left (as package net does).
func partialDeadline(ctx context.Context, n int) (context.Context, context.CancelFunc) {
	deadline, ok := ctx.Deadline()
	if !ok || n <= 1 {
		return ctx, func() {}
	}
	left := time.Until(deadline)
	share := left / time.Duration(n)
	const saneMinimum = 2 * time.Second
	if share < saneMinimum {
		share = min(left, saneMinimum)
	}
	return context.WithTimeout(ctx, share)
}

// resolve turns an address into the socket addresses to try, in order.
func (d *Dialer) resolve(ctx context.Context, network, address string) ([]net.Addr, error) {
	r := d.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	switch network {
	case "unix":
		a, err := net.ResolveUnixAddr(network, address)
		if err != nil {
			return nil, err
		}
		return []net.Addr{a}, nil
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, net.UnknownNetworkError(network)
	}
	host, service, err := net.SplitHostPort(address)
	if err != nil {
		return nil, err
	}
	port, err := r.LookupPort(ctx, network, service)
	if err != nil {
		return nil, err
	}
	if host == "" {
		// As package net: the local system.
		return []net.Addr{&net.TCPAddr{Port: port}}, nil
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ipnet := map[string]string{"tcp": "ip", "tcp4": "ip4", "tcp6": "ip6"}[network]
		if ips, err = r.LookupNetIP(ctx, ipnet, host); err != nil {
			return nil, err
		}
	}
	var first, rest []net.Addr
	for _, ip := range ips {
		is4 := ip.Unmap().Is4()
		if (network == "tcp4" && !is4) || (network == "tcp6" && is4) {
			continue
		}
		a := net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(port)))
		if len(first) == 0 || is4 == (first[0].(*net.TCPAddr).IP.To4() != nil) {
			first = append(first, a)
		} else {
			rest = append(rest, a)
		}
	}
	if len(first) == 0 {
		return nil, &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	return append(first, rest...), nil
}
