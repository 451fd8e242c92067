package telemetry

import (
	"math/rand/v2"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/metric"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// ScopeName is the instrumentation scope (meter name) of every metric:
// this package's import path, as OpenTelemetry names the scope of an
// instrumentation package. Its version is the hubio module's (ScopeVersion).
const ScopeName = "github.com/hubio/hubio/telemetry"

// ScopeVersion returns the instrumentation scope's version: the version of
// the github.com/hubio/hubio module the program was built with, from its
// build information (debug.ReadBuildInfo), so a release needs no constant
// bumped. It is "(devel)" where the build has no version for the module: a
// build inside hubio's own repository, or one that replaces the module with
// a local directory.
func ScopeVersion() string { return scopeVersion }

var scopeVersion = moduleVersion()

// modulePath is the module telemetry belongs to.
const modulePath = "github.com/hubio/hubio"

func moduleVersion() string {
	const devel = "(devel)"
	bi, ok := debug.ReadBuildInfo()
	if !ok {
		return devel
	}
	m := &bi.Main
	if m.Path != modulePath {
		m = nil
		for _, d := range bi.Deps {
			if d.Path == modulePath {
				m = d
				break
			}
		}
	}
	switch {
	case m == nil:
		return devel
	case m.Replace != nil:
		if v := m.Replace.Version; v != "" {
			return v
		}
		return devel // a local directory: its version is not known
	case m.Version != "":
		return m.Version
	}
	return devel
}

// DefaultTCPInfoInterval is A80's TCP_CONNECTION_METRICS_RECORD_INTERVAL.
const DefaultTCPInfoInterval = 5 * time.Minute

// defaultHandOffEvery is WithHandOffSampling's default period.
const defaultHandOffEvery = 256

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

// WithHandOffSampling measures one hand-off in every n (256 by default;
// 1 measures all, n ≤ 0 none) for hubio.hub.handoff.latency. Each sample
// is one Record into the SDK's histogram on the waiter's goroutine, about
// 1 µs with a reader on the 2-vCPU VM of docs/telemetry.md; at one caller
// per conn, where an RPC makes about four hand-offs, one in 16 cost about
// 0.25% of CPU per RPC, one in 64 0.17%, and one in 256 leaves it at a few
// hundredths (docs/telemetry.md, sixth pass). One in 256 still gives a
// server at 1,000 RPCs/s about a thousand samples a minute; a program that
// wants more from a lightly loaded hub passes a smaller n.
func WithHandOffSampling(n int) Option {
	return func(c *config) { c.handOffEvery = n }
}

// WithLoopDelayProbe arms a timer on each instrumented hub every d (1 s by
// default; d ≤ 0 turns the probe off), so that hubio.hub.loop.delay has a
// sample per d even on a hub that runs no other timers, as Node's
// monitorEventLoopDelay does. A runtime timer keeps the period and adds the
// hub timer at its expiry, so the sample is how late the hub ran a timer
// once it was due, and the hub's heap is empty in between.
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

	// start is when New made the Telemetry: the start of every cumulative
	// series SizeHistograms reports.
	start time.Time
	// sizesProduced is set by ProduceSizes and never cleared: collections
	// no longer hand the syscall sizes to the size histograms.
	sizesProduced atomic.Bool
}

// New creates the instruments on the configured MeterProvider (by default
// otel.GetMeterProvider(), the global one, which forwards to whatever
// provider the program installs later) and registers the callbacks of the
// observable ones. Instrument each hub and conn once per Telemetry; two
// Telemetry values on one provider would report every series twice, so
// share one (ForProvider does).
func New(opts ...Option) (*Telemetry, error) {
	cfg := config{tcpInterval: DefaultTCPInfoInterval, handOffEvery: defaultHandOffEvery, delayProbe: time.Second}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.provider == nil {
		cfg.provider = otel.GetMeterProvider()
	}
	t := &Telemetry{cfg: cfg, start: time.Now(), meter: cfg.provider.Meter(ScopeName, metric.WithInstrumentationVersion(scopeVersion))}
	t.conns.init()
	t.hubs.init()
	if err := t.inst.init(t); err != nil {
		return nil, err
	}
	return t, nil
}

// providers caches ForProvider's Telemetry values, one per provider given.
var providers sync.Map // metric.MeterProvider → *Telemetry

// global is ForProvider(nil)'s Telemetry: one for the process, made on
// first use.
var global struct {
	once sync.Once
	t    *Telemetry
	err  error
}

// ForProvider returns the Telemetry with default options for mp, creating
// it on first use: every caller that instruments through the same provider
// shares it, as grpcopt does. nil means the global provider: one Telemetry
// for the process, built on otel.GetMeterProvider() at the first call.
// Before the program installs a provider that is OpenTelemetry's forwarding
// provider, which hands everything to the provider the program installs
// later (otel.SetMeterProvider), so a program that calls SetMeterProvider
// after its first conn still gets one series per hub and conn. Do not also
// pass that installed provider explicitly: two Telemetry values on one
// provider report every hub twice.
//
// The Telemetry, and so mp, is held for the life of the process: pass
// long-lived providers (tests that make one per case should build their own
// with New).
func ForProvider(mp metric.MeterProvider) (*Telemetry, error) {
	if mp == nil {
		global.once.Do(func() { global.t, global.err = New() })
		return global.t, global.err
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
