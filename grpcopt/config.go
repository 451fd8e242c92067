package grpcopt

import (
	"context"
	"errors"
	"math"
	"net"
	"strings"
	"time"

	"go.opentelemetry.io/otel/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// Config carries the settings shared by the options this package builds.
// The zero Config uses poller.Default(), package net's defaults and grpc-go's
// keepalive defaults; the package-level ServerOption, DialOption and Listen
// are shorthands for a Config with only Hub set.
type Config struct {
	// Hub owns the conns; nil means poller.Default().
	Hub *poller.Hub
	// Group, if set, spreads the conns across its hubs instead (Hub is then
	// ignored): each accepted or dialed conn goes to Group.Next(). See
	// group.go.
	Group *poller.Group
	// ServerKeepalive is the servers' gRPC keepalive; nil means grpc-go's
	// defaults (Time 2 h, Timeout 20 s). ServerOptions hands it to grpc-go
	// (grpc.KeepaliveParams), and hub server conns get the TCP_USER_TIMEOUT
	// grpc-go derives from it on a *net.TCPConn: Timeout (20 s when zero)
	// unless Time is infinite. Without it, hub server conns get 20 s, as
	// grpc-go's defaults give.
	ServerKeepalive *keepalive.ServerParameters
	// ClientKeepalive is the clients' gRPC keepalive; nil means none.
	// DialOptions hands it to grpc-go (grpc.WithKeepaliveParams), and dialed
	// conns get the TCP_USER_TIMEOUT grpc-go derives from it on a
	// *net.TCPConn: Timeout (20 s when zero) unless Time is infinite.
	ClientKeepalive *keepalive.ClientParameters
	// UserTimeout, if positive, is the TCP_USER_TIMEOUT of every TCP hub
	// conn, server or client, in place of the value derived from the
	// keepalive parameters: how long sent data may stay unacknowledged
	// before the kernel drops the connection. (A raw *net.TCPConn moved by
	// ServerOption then gets grpc-go's own value on the same socket, as it
	// would without the hub.)
	UserTimeout time.Duration
	// DialTimeout bounds each connect, on top of the context grpc-go gives
	// the dialer; zero means none (a negative value is refused by
	// DialOptions and Dial, and ignored with a warning by DialOption).
	// Through a proxy, it bounds the connect to the proxy and the CONNECT
	// handshake together.
	DialTimeout time.Duration
	// RequireHub makes ServerOption's credentials fail the handshake of
	// every conn they cannot put on the hub (a wrapper that changes Read or
	// Write, see ServerOption) with an error matching ErrOffHub, instead
	// of serving it through the conn grpc-go was given. The first refusal
	// of each server is logged at error level (grpclog's "hubio"
	// component), with the conn's Go type and the remedy; all are counted
	// in ServerStats.Refused.
	RequireHub bool
	// MultipathTCP makes Dial ask for Multipath TCP, as
	// net.Dialer.SetMultipathTCP(true) does, falling back to TCP where the
	// kernel has none (see transport.Dialer.SetMultipathTCP). An MPTCP
	// socket refuses TCP_USER_TIMEOUT: such conns go without it, counted in
	// SockoptStats, as grpc-go leaves them. Servers need no setting: Listen
	// and package net's listeners accept MPTCP clients already.
	MultipathTCP bool
	// NoProxy turns off the HTTP CONNECT proxy that the dialer otherwise
	// takes from the environment (HTTPS_PROXY, NO_PROXY), as
	// grpc.WithNoProxy does for grpc-go's own dialer. grpc.WithNoProxy
	// cannot be seen from a dialer, so a client given it together with
	// DialOption must set NoProxy as well. See the package doc.
	NoProxy bool
	// Stats, if set, counts what the credentials built from this Config
	// (ServerOption, ServerOptions, Credentials) do with their conns, as
	// ReadServerStats counts them for the whole process: give each server
	// its own to tell which one leaves conns off the hub. Configs that
	// share one add up.
	Stats *ServerCounters

	// Telemetry: the metrics of the hub and of every conn these options
	// create (see package telemetry) are off unless one of the next three
	// fields turns them on: with an OpenTelemetry SDK installed they cost
	// 1–3% of CPU per RPC with one caller per conn (docs/telemetry.md,
	// Cost). Metrics records through otel.GetMeterProvider(), the global
	// provider, which hands everything to the provider the program
	// installs with otel.SetMeterProvider, before or after its first
	// conn. MeterProvider, if set, receives them instead; Telemetry, if
	// set, is used instead of both, with its own options. NoTelemetry
	// turns all three off.
	Metrics       bool
	MeterProvider metric.MeterProvider
	Telemetry     *telemetry.Telemetry
	NoTelemetry   bool

	// Admission, if set, decides which conns the listeners of Listen take
	// (limits in total and per peer, accept pacing, shedding by loop
	// delay; see transport.AdmissionPolicy and admission.go); nil, the
	// default, takes every conn.
	Admission *transport.Admission

	// resolver looks up host names for Dial; nil means net.DefaultResolver.
	// Only tests set it, to dial names without DNS.
	resolver *net.Resolver
}

// pickHub picks the hub for a new conn: with a Group, each call advances
// its round robin (Group.Next), so a caller picks once and keeps the hub;
// without one, it is singleHub.
func (c Config) pickHub() *poller.Hub {
	if c.Group != nil {
		return c.Group.Next()
	}
	return c.singleHub()
}

// singleHub is the hub of a Config without a Group: Hub, or
// poller.Default() when Hub is nil. It picks nothing, so any caller may ask.
func (c Config) singleHub() *poller.Hub {
	if c.Hub == nil {
		return poller.Default()
	}
	return c.Hub
}

// unsupported reports whether hubs cannot run here (not Linux): the options
// then fall back to package net, as documented in the package comment.
func (c Config) unsupported() bool {
	if c.Group != nil {
		return false // NewGroup fails where hubs cannot run
	}
	return errors.Is(c.singleHub().Err(), errors.ErrUnsupported)
}

// infinity is grpc-go's keepalive Time that turns keepalive off.
const infinity = time.Duration(math.MaxInt64)

// grpc-go's keepalive defaults (internal/transport/defaults.go).
const (
	defaultServerKeepaliveTime    = 2 * time.Hour
	defaultKeepaliveTimeout       = 20 * time.Second
	defaultClientMinKeepaliveTime = 10 * time.Second // grpc.WithKeepaliveParams' floor
)

// serverUserTimeout is the TCP_USER_TIMEOUT grpc-go's server sets on a
// *net.TCPConn (http2_server.go, NewServerTransport); 0 means none.
func (c Config) serverUserTimeout() time.Duration {
	if c.UserTimeout > 0 {
		return c.UserTimeout
	}
	var kp keepalive.ServerParameters
	if c.ServerKeepalive != nil {
		kp = *c.ServerKeepalive
	}
	if kp.Time == 0 {
		kp.Time = defaultServerKeepaliveTime
	}
	if kp.Timeout == 0 {
		kp.Timeout = defaultKeepaliveTimeout
	}
	if kp.Time == infinity {
		return 0
	}
	return kp.Timeout
}

// clientUserTimeout is the TCP_USER_TIMEOUT grpc-go's client sets on a
// *net.TCPConn (http2_client.go, NewHTTP2Client); 0 means none.
func (c Config) clientUserTimeout() time.Duration {
	if c.UserTimeout > 0 {
		return c.UserTimeout
	}
	if c.ClientKeepalive == nil {
		return 0 // grpc-go's default Time is infinite
	}
	kp := *c.ClientKeepalive
	if kp.Time < defaultClientMinKeepaliveTime {
		kp.Time = defaultClientMinKeepaliveTime
	}
	if kp.Timeout == 0 {
		kp.Timeout = defaultKeepaliveTimeout
	}
	if kp.Time == infinity {
		return 0
	}
	return kp.Timeout
}

// wrap turns a hub conn into what grpc-go is handed, with TCP_USER_TIMEOUT
// set to userTimeout (none if 0). The option is best-effort, as grpc-go's
// SetTCPUserTimeout is on a *net.TCPConn: a socket that refuses it (an
// MPTCP socket does) is counted in SockoptStats and served without it,
// never closed. server says which count.
func (c Config) wrap(hc *transport.Conn, userTimeout time.Duration, server bool) *Conn {
	if userTimeout > 0 && hc.LocalAddr().Network() == "tcp" {
		if err := setUserTimeout(hc, userTimeout); err != nil && !errors.Is(err, net.ErrClosed) {
			sockoptRefused(server)
		}
	}
	c.instrument(hc)
	return &Conn{Conn: hc}
}

// ServerOption is a grpc.ServerOption whose credentials move each accepted
// conn onto h (nil means poller.Default()), then run inner's handshake over
// the hub conn; inner nil means insecure. See Config.ServerOption.
func ServerOption(h *poller.Hub, inner credentials.TransportCredentials) grpc.ServerOption {
	return Config{Hub: h}.ServerOption(inner)
}

// DialOption is a grpc.DialOption whose context dialer connects on hub h
// (nil means poller.Default()). See Config.DialOption.
func DialOption(h *poller.Hub) grpc.DialOption {
	return Config{Hub: h}.DialOption()
}

// Listen is a drop-in for net.Listen whose conns already live on hub h
// (nil means poller.Default()), for grpc.Server.Serve. See Config.Listen.
func Listen(h *poller.Hub, network, address string) (net.Listener, error) {
	return Config{Hub: h}.Listen(network, address)
}

// ServerOption returns grpc.Creds with credentials that move each accepted
// conn onto the hub (duplicating its fd and closing the original once the
// HTTP/2 preface has arrived) and run inner's handshake (TLS, ALTS, any;
// nil means insecure) over the hub conn. AuthInfo, Info, Clone and
// OverrideServerName are inner's, so peers see inner's security level.
//
// grpc-go guards the handshake and the client preface with
// grpc.ConnectionTimeout through a deadline on the raw conn, and clears it
// on the raw conn afterwards. The credentials keep that promise on the hub
// conn: a conn that has not completed its handshake and sent its preface
// and first SETTINGS frame when the raw conn's deadline passes fails as it
// would without the hub; a conn that has is never cut.
//
// With a listener from Listen on the same hub, conns are not moved again
// (also behind a wrapper whose conns expose NetConn, as testutil's fault
// injector does); a Listen conn of another hub is moved.
//
// A listener that wraps its conns is looked through when the wrapper only
// adds behaviour around Close or socket options: etcd's and
// netutil.LimitListener's conns, a struct embedding *net.TCPConn. Such a
// wrapper is a struct with one embedded, exported conn field and no method
// of its own beyond Close, LocalAddr, RemoteAddr, NetConn and the socket
// option setters; its Read, Write and deadline setters are the embedded
// conn's. Its socket is moved onto the hub, reads and writes go through the
// hub conn, and closing the hub conn closes the wrapper once (releasing a
// limiting listener's slot). A wrapper that changes the byte stream (a
// muxer such as cmux that has read bytes ahead, a rate limiter, *tls.Conn)
// is never bypassed: its conn is served through the conn grpc-go was given,
// as without hubio, counted in ServerStats.OffHub (ReadServerStats, and
// Config.Stats), and logged once per server at warning level; with
// Config.RequireHub its handshake fails with ErrOffHub instead, counted in
// ServerStats.Refused and logged once per server at error level. A
// wrapper that does not fit that shape (a generic one, one that defines a
// Read that only calls its conn's) is looked through when it implements
// Bypassable.
//
// Moved conns get the TCP_USER_TIMEOUT grpc-go would set on a
// *net.TCPConn (see Config.ServerKeepalive); a raw *net.TCPConn gets
// grpc-go's own setting too, on the same socket. ServerOption and
// Credentials read only the server side of the Config (UserTimeout and
// ServerKeepalive) and never panic: where ServerOptions would refuse a
// value, they drop a negative duration (its default applies) or clamp a
// user timeout into TCP_USER_TIMEOUT's range, and log a warning naming
// the field, as grpc.KeepaliveParams does with a too small Time.
//
// When inner dispatches a conn (returns credentials.ErrConnDispatched),
// the hub conn it was handed is its own and stays open; the credentials
// release only the raw conn's duplicate fd.
//
// Close the hub only after the servers using it have stopped: once it is
// closed, every accepted conn fails its handshake and is closed (the
// client sees it reset), while grpc-go's Serve goes on accepting (it stops
// only for its listener's errors; with Listen on the same hub, Accept fails
// and Serve returns). The credentials count those conns in
// ServerStats.HubClosed and log the first, at error level through grpclog,
// with the way out: stop the server and serve again with options on a live
// hub.
func (c Config) ServerOption(inner credentials.TransportCredentials) grpc.ServerOption {
	return grpc.Creds(c.Credentials(inner))
}

// ServerOptions returns ServerOption(inner) and, when ServerKeepalive is
// set, grpc.KeepaliveParams with it: one value sets both grpc-go's
// keepalive and the TCP_USER_TIMEOUT of the hub conns. It checks the
// server side only: it fails for a negative duration in ServerKeepalive or
// UserTimeout and for a timeout out of TCP_USER_TIMEOUT's range (1ms to
// about 24.8 days); ClientKeepalive and DialTimeout are not read.
func (c Config) ServerOptions(inner credentials.TransportCredentials) ([]grpc.ServerOption, error) {
	if err := c.validateServer(); err != nil {
		return nil, err
	}
	opts := []grpc.ServerOption{c.ServerOption(inner)}
	if c.ServerKeepalive != nil {
		opts = append(opts, grpc.KeepaliveParams(*c.ServerKeepalive))
	}
	return opts, nil
}

// Listen announces on the local address like net.Listen ("tcp", "tcp4",
// "tcp6", "unix"); accepted conns are *Conn values on the hub. It works with
// or without ServerOption. It fails for a server-side duration that
// ServerOptions refuses; the client side is not read.
func (c Config) Listen(network, address string) (net.Listener, error) {
	if err := c.validateServer(); err != nil {
		return nil, err
	}
	if c.unsupported() {
		return net.Listen(network, address)
	}
	if c.Group != nil {
		return c.listenGroup(network, address)
	}
	l, err := transport.ListenHub(c.singleHub(), network, address)
	if err != nil {
		return nil, err
	}
	return &listener{Listener: l, cfg: c, unhook: c.admit(l)}, nil
}

// listener hands grpc-go *Conn values.
type listener struct {
	*transport.Listener
	cfg Config
	// unhook removes the listener's warning hook from the Config's
	// Admission (see admit); Close calls it, and later calls do nothing.
	unhook func()
}

// Close closes the listening socket, as transport.Listener's Close, and
// takes the listener's hook off the Config's Admission.
func (l *listener) Close() error {
	l.unhook()
	return l.Listener.Close()
}

// Accept returns the next conn as a *Conn. Its socket options are
// best-effort (see SockoptStats): a conn is never dropped for one.
func (l *listener) Accept() (net.Conn, error) {
	hc, err := l.Listener.AcceptHub()
	if err != nil {
		return nil, err
	}
	return l.cfg.wrap(hc, l.cfg.serverUserTimeout(), true), nil
}

// DialOption returns grpc.WithContextDialer with a dialer that connects on
// the hub. It understands every address form grpc-go hands a custom dialer
// ("host:port", "[v6]:port", "unix:///abs", "unix:rel", "unix:@abstract",
// "unix-abstract:name"), and returns dial errors as *net.OpError values so
// that grpc-go's reconnect backoff applies. It goes through the HTTP CONNECT
// proxy the environment names, as grpc-go's own dialer does (see the
// package doc and NoProxy).
//
// DialOption reads only the client side of the Config (UserTimeout,
// ClientKeepalive, DialTimeout) and never panics: where DialOptions would
// refuse a value, it drops a negative duration (a negative DialTimeout
// means none) or clamps a user timeout into TCP_USER_TIMEOUT's range, and
// logs a warning naming the field, as grpc.WithKeepaliveParams does with a
// too small Time.
func (c Config) DialOption() grpc.DialOption {
	return grpc.WithContextDialer(c.forClient().dial)
}

// DialOptions returns DialOption() and, when ClientKeepalive is set,
// grpc.WithKeepaliveParams with it: one value sets both grpc-go's keepalive
// and the TCP_USER_TIMEOUT of the dialed conns. It checks the client side
// only: it fails for a negative duration in ClientKeepalive, DialTimeout or
// UserTimeout and for a timeout out of TCP_USER_TIMEOUT's range;
// ServerKeepalive is not read.
func (c Config) DialOptions() ([]grpc.DialOption, error) {
	if err := c.validateClient(); err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{c.DialOption()}
	if c.ClientKeepalive != nil {
		opts = append(opts, grpc.WithKeepaliveParams(*c.ClientKeepalive))
	}
	return opts, nil
}

// Dial connects to a grpc-go dialer address (see DialOption), through the
// proxy the environment names for it, if any. It fails, before dialing,
// for a client-side duration that DialOptions refuses.
func (c Config) Dial(ctx context.Context, addr string) (net.Conn, error) {
	if err := c.validateClient(); err != nil {
		return nil, err
	}
	return c.dial(ctx, addr)
}

// dial is Dial for a Config whose client side is known to be valid
// (DialOption's, fixed by forClient once): it checks nothing.
func (c Config) dial(ctx context.Context, addr string) (net.Conn, error) {
	network, address := ParseTarget(addr)
	return c.dialProxied(ctx, network, address, c.dialDirect)
}

// dialDirect connects to network, address without a proxy.
func (c Config) dialDirect(ctx context.Context, network, address string) (net.Conn, error) {
	if c.unsupported() {
		d := net.Dialer{Timeout: c.DialTimeout, Resolver: c.resolver}
		d.SetMultipathTCP(c.MultipathTCP)
		return d.DialContext(ctx, network, address)
	}
	d := transport.Dialer{Hub: c.pickHub(), Timeout: c.DialTimeout, Resolver: c.resolver}
	d.SetMultipathTCP(c.MultipathTCP)
	hc, err := d.DialHub(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return c.wrap(hc, c.clientUserTimeout(), false), nil
}

// ParseTarget splits an address given to a grpc-go custom dialer into a
// network and an address for net.Dial: "unix:///abs" and "unix://abs" give
// ("unix", "/abs") and ("unix", "abs"), "unix:rel" gives ("unix", "rel"),
// "unix-abstract:name" and "unix:@name" give ("unix", "@name"), a leading
// NUL byte marks an abstract name too; anything else is ("tcp", addr).
func ParseTarget(addr string) (network, address string) {
	switch {
	case strings.HasPrefix(addr, "unix://"):
		return "unix", strings.TrimPrefix(addr, "unix://")
	case strings.HasPrefix(addr, "unix:"):
		return "unix", strings.TrimPrefix(addr, "unix:")
	case strings.HasPrefix(addr, "unix-abstract:"):
		name := strings.TrimPrefix(strings.TrimPrefix(addr, "unix-abstract:"), "//")
		return "unix", "@" + name
	case strings.HasPrefix(addr, "\x00"):
		return "unix", "@" + addr[1:]
	}
	return "tcp", addr
}
