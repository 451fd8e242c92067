package telemetry

import (
	"math/rand/v2"
	"sync"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// ScopeName is the instrumentation scope (meter name) of every metric: the
// module path.
const ScopeName = "github.com/hubio/hubio"

// DefaultTCPInfoInterval is A80's TCP_CONNECTION_METRICS_RECORD_INTERVAL.
const DefaultTCPInfoInterval = 5 * time.Minute

// Option configures a Telemetry.
type Option func(*config)

type config struct {
	provider     metric.MeterProvider
	tcpInterval  time.Duration
	addrLabels   bool
	handOffEvery int
	delayProbe   time.Duration
	// latencyPeriod > 0 samples write latency; see latency.go.
	latencyPeriod int
}

// WithMeterProvider records through mp instead of otel.GetMeterProvider().
func WithMeterProvider(mp metric.MeterProvider) Option {
	return func(c *config) { c.provider = mp }
}

// WithTCPInfoInterval sets A80's TCP_INFO sampling interval (5 minutes by
// default): each sample is taken a random 10–110% of d after the previous
// one. d ≤ 0 samples only when a conn closes.
func WithTCPInfoInterval(d time.Duration) Option {
	return func(c *config) { c.tcpInterval = d }
}

// WithAddressLabels adds A80's optional labels network.local.address,
// network.local.port, network.peer.address and network.peer.port to the
// grpc.tcp.* metrics of TCP conns. They are off by default: each
// connection then makes series of its own.
func WithAddressLabels(on bool) Option {
	return func(c *config) { c.addrLabels = on }
}

// WithHandOffSampling measures one hand-off in every n (16 by default;
// 1 measures all, n ≤ 0 none) for hubio.hub.handoff.latency.
func WithHandOffSampling(n int) Option {
	return func(c *config) { c.handOffEvery = n }
}

// WithLoopDelayProbe arms a timer on each instrumented hub every d (1 s by
// default; d ≤ 0 turns the probe off), so that hubio.hub.loop.delay has a
// sample per d even on a hub that runs no other timers, as Node's
// monitorEventLoopDelay does.
func WithLoopDelayProbe(d time.Duration) Option {
	return func(c *config) { c.delayProbe = d }
}

// Telemetry holds a meter's instruments and the hubs and conns reporting
// to them. Its methods are safe for concurrent use.
type Telemetry struct {
	cfg   config
	meter metric.Meter
	inst  instruments
	conns connRegistry
	hubs  hubRegistry
	lat   latencyInstruments // see latency.go
	adms  admissionRegistry  // see listener.go
}

// New creates the instruments on the configured MeterProvider (by default
// otel.GetMeterProvider(), the global one, which forwards to whatever
// provider the program installs later) and registers the callbacks of the
// observable ones. Instrument each hub and conn once per Telemetry; two
// Telemetry values on one provider would report every series twice, so
// share one (ForProvider does).
func New(opts ...Option) (*Telemetry, error) {
	cfg := config{tcpInterval: DefaultTCPInfoInterval, handOffEvery: 16, delayProbe: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetMeterProvider()
	}
	t := &Telemetry{cfg: cfg, meter: cfg.provider.Meter(ScopeName)}
	t.conns.init()
	t.hubs.init()
	if err := t.inst.init(t); err != nil {
		return nil, err
	}
	return t, nil
}

// providers caches ForProvider's Telemetry values, one per provider.
var providers sync.Map // metric.MeterProvider → *Telemetry

// ForProvider returns the Telemetry with default options for mp (nil means
// otel.GetMeterProvider() as it is now), creating it on first use: every
// caller that instruments through the same provider shares it, as grpcopt
// does. The Telemetry, and so mp, is held for the life of the process:
// pass long-lived providers (tests that make one per case should build
// their own with New).
func ForProvider(mp metric.MeterProvider) (*Telemetry, error) {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	if t, ok := providers.Load(mp); ok {
		return t.(*Telemetry), nil
	}
	t, err := New(WithMeterProvider(mp))
	if err != nil {
		return nil, err
	}
	got, _ := providers.LoadOrStore(mp, t)
	if got != t {
		t.inst.unregister() // lost the race: keep the first
	}
	return got.(*Telemetry), nil
}

// InstrumentHub instruments h through ForProvider(nil).
func InstrumentHub(h *poller.Hub) error {
	t, err := ForProvider(nil)
	if err != nil {
		return err
	}
	return t.InstrumentHub(h)
}

// InstrumentGroup instruments every hub of g through ForProvider(nil).
func InstrumentGroup(g *poller.Group) error {
	t, err := ForProvider(nil)
	if err != nil {
		return err
	}
	return t.InstrumentGroup(g)
}

// InstrumentConn instruments c, and its hub, through ForProvider(nil).
func InstrumentConn(c *transport.Conn) error {
	t, err := ForProvider(nil)
	if err != nil {
		return err
	}
	if err := t.InstrumentHub(c.Hub()); err != nil {
		return err
	}
	return t.InstrumentConn(c)
}

// jitter returns a random duration in [10%, 110%) of d: A80's alarm.
func jitter(d time.Duration) time.Duration {
	return d/10 + rand.N(d)
}
