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
// with package net's defaults. As a net.Dialer, it may be used by several
// goroutines at once, as long as its fields are not changed meanwhile.
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
	// FallbackDelay is the head start, as in net.Dialer, that the
	// addresses of a "tcp" host name's first family get before those of
	// the other family are raced against them (RFC 6555 Fast Fallback):
	// zero means 300 ms, negative disables the race (the families are
	// tried one after the other).
	FallbackDelay time.Duration

	// mptcp is set by SetMultipathTCP; mptcpDefault until then.
	mptcp mptcpSetting
}

// mptcpSetting is a Dialer's Multipath TCP choice: package net's default
// (GODEBUG), or set by SetMultipathTCP.
type mptcpSetting uint8

const (
	mptcpDefault mptcpSetting = iota
	mptcpOn
	mptcpOff
)

// SetMultipathTCP directs TCP dials to use, or not use, Multipath TCP, as
// net.Dialer.SetMultipathTCP does: where the kernel has no MPTCP, or the
// MPTCP dial fails for any reason, the address is dialed again with plain
// TCP. Unix dials ignore it. MPTCP sockets refuse some TCP options
// (TCP_USER_TIMEOUT, on Linux up to at least 6.18): the options a dial
// sets itself are best-effort, as package net's are (see
// Conn.MultipathTCP).
func (d *Dialer) SetMultipathTCP(use bool) {
	d.mptcp = mptcpOff
	if use {
		d.mptcp = mptcpOn
	}
}

// MultipathTCP reports whether TCP dials ask for MPTCP, as
// net.Dialer.MultipathTCP does; it does not check whether the kernel has
// it. Until SetMultipathTCP is called it follows package net's default for
// dialers: off, unless GODEBUG has multipathtcp=1 or multipathtcp=3 (in
// the environment, read at each call as package net reads it, or in the
// program's go.mod godebug lines and //go:debug directives).
func (d *Dialer) MultipathTCP() bool {
	switch d.mptcp {
	case mptcpOn:
		return true
	case mptcpOff:
		return false
	}
	v := godebugValue("multipathtcp")
	return v == "1" || v == "3"
}

// Dial is DialContext with context.Background().
func (d *Dialer) Dial(network, address string) (net.Conn, error) {
	return d.DialContext(context.Background(), network, address)
}

// DialContext connects to address on network ("tcp", "tcp4", "tcp6" or
// "unix"), with net.Dial's address syntax. As package net does, a host
// name's addresses of the first address's family are tried in turn, each
// with a fair share of the remaining time, and for "tcp" those of the
// other family are raced against them after FallbackDelay. Cancelling ctx
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
	netw := "tcp"
	if network == "unix" {
		netw = "unix"
	}
	sd := &sysDialer{d: d, h: h, network: network, netw: netw, ka: keepAliveSettings{d.KeepAlive, d.KeepAliveConfig}}
	if err := h.Err(); err != nil {
		return nil, sd.opErr(nil, err)
	}
	if d.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, d.Timeout)
		defer cancel()
	}
	addrs, err := d.resolve(ctx, network, address)
	if err != nil {
		// As package net: a resolution error names no address.
		return nil, &net.OpError{Op: "dial", Net: network, Err: mapCtxErr(err)}
	}
	var primaries, fallbacks []net.Addr
	if network == "tcp" && d.FallbackDelay >= 0 {
		primaries, fallbacks = partition(addrs)
	} else {
		primaries = addrs
	}
	return sd.dialParallel(ctx, primaries, fallbacks)
}

// sysDialer is one DialHub call's parameters, as package net's is. It is
// immutable once made, and shared by the racing goroutines of dialParallel.
type sysDialer struct {
	d             *Dialer
	h             *poller.Hub
	network, netw string // as asked; and "tcp" or "unix"
	ka            keepAliveSettings
}

func (sd *sysDialer) opErr(raddr net.Addr, err error) error {
	return &net.OpError{Op: "dial", Net: sd.network, Source: sd.d.LocalAddr, Addr: raddr, Err: err}
}

// partition splits addrs into those of the first address's family and the
// others, as package net's addrList.partition does.
func partition(addrs []net.Addr) (primaries, fallbacks []net.Addr) {
	is4 := func(a net.Addr) bool { ta, ok := a.(*net.TCPAddr); return ok && ta.IP.To4() != nil }
	for _, a := range addrs {
		if is4(a) == is4(addrs[0]) {
			primaries = append(primaries, a)
		} else {
			fallbacks = append(fallbacks, a)
		}
	}
	return primaries, fallbacks
}

// fallbackDelay is Dialer.FallbackDelay with package net's default.
func (d *Dialer) fallbackDelay() time.Duration {
	if d.FallbackDelay > 0 {
		return d.FallbackDelay
	}
	return 300 * time.Millisecond
}

// dialParallel races the primaries against the fallbacks, giving the
// primaries a head start of FallbackDelay (RFC 6555 Fast Fallback), as
// package net's dialParallel does. It returns the first conn established
// and closes any other; else the primaries' error.
func (sd *sysDialer) dialParallel(ctx context.Context, primaries, fallbacks []net.Addr) (*Conn, error) {
	if len(fallbacks) == 0 {
		return sd.dialSerial(ctx, primaries)
	}
	returned := make(chan struct{})
	defer close(returned)
	type dialResult struct {
		c       *Conn
		err     error
		primary bool
		done    bool
	}
	results := make(chan dialResult) // unbuffered: a loser sees returned
	startRacer := func(ctx context.Context, primary bool) {
		ras := primaries
		if !primary {
			ras = fallbacks
		}
		c, err := sd.dialSerial(ctx, ras)
		select {
		case results <- dialResult{c: c, err: err, primary: primary, done: true}:
		case <-returned:
			if c != nil {
				c.Close()
			}
		}
	}
	var primary, fallback dialResult
	primaryCtx, primaryCancel := context.WithCancel(ctx)
	defer primaryCancel()
	go startRacer(primaryCtx, true)
	fallbackTimer := time.NewTimer(sd.d.fallbackDelay())
	defer fallbackTimer.Stop()
	for {
		select {
		case <-fallbackTimer.C:
			fallbackCtx, fallbackCancel := context.WithCancel(ctx)
			defer fallbackCancel()
			go startRacer(fallbackCtx, false)
		case res := <-results:
			if res.err == nil {
				return res.c, nil
			}
			if res.primary {
				primary = res
			} else {
				fallback = res
			}
			if primary.done && fallback.done {
				return nil, primary.err
			}
			if res.primary && fallbackTimer.Stop() {
				// The primaries failed before the head start ran out:
				// start the fallbacks now.
				fallbackTimer.Reset(0)
			}
		}
	}
}

// dialSerial tries ras in turn, each with its share of the time left, and
// returns the first conn or the first error.
func (sd *sysDialer) dialSerial(ctx context.Context, ras []net.Addr) (*Conn, error) {
	var first error
	for i, ra := range ras {
		if err := ctx.Err(); err != nil {
			return nil, sd.opErr(ra, mapCtxErr(err)) // as package net does
		}
		actx, cancel := partialDeadline(ctx, len(ras)-i)
		c, err := sd.d.dialOne(actx, sd.h, sd.network, sd.netw, ra, sd.ka)
		cancel()
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = sd.opErr(ra, mapCtxErr(err))
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
		fd, err := d.dialSocket(ctx, h, network, netw, ra, ka)
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

// dialSocket is dialFD with MPTCP when the dialer asks for it, falling
// back to plain TCP on any error, as package net's dialMPTCP does (the
// kernel refusing the protocol, ENOPROTOOPT with net.mptcp.enabled=0, or
// MPTCP blocked some other way), unless ctx has ended.
func (d *Dialer) dialSocket(ctx context.Context, h *poller.Hub, network, netw string, ra net.Addr, ka keepAliveSettings) (*netFD, error) {
	if netw == "tcp" && d.MultipathTCP() {
		fd, err := dialFD(ctx, h, network, ra, d.LocalAddr, ka, true)
		if err == nil || ctx.Err() != nil {
			return fd, err
		}
	}
	return dialFD(ctx, h, network, ra, d.LocalAddr, ka, false)
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

// resolve turns an address into the socket addresses to try, in the
// resolver's order.
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
	var addrs []net.Addr
	for _, ip := range ips {
		is4 := ip.Unmap().Is4()
		if (network == "tcp4" && !is4) || (network == "tcp6" && is4) {
			continue
		}
		addrs = append(addrs, net.TCPAddrFromAddrPort(netip.AddrPortFrom(ip.Unmap(), uint16(port))))
	}
	if len(addrs) == 0 {
		return nil, &net.AddrError{Err: "no suitable address found", Addr: host}
	}
	return addrs, nil
}
