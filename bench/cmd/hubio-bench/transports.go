package main

import (
	"context"
	"fmt"
	"net"
	"strings"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/bench/internal/threads"
	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/telemetry/sdkproducer"
)

// Transport names, as given to -transports.
const (
	transportStd     = "std"
	transportHub     = "hub"
	transportThreads = "threads"
	// The hub transport again, for the telemetry cost (-metrics). hub is
	// grpcopt's default, which records nothing (telemetry is opt-in);
	// hub-global records through otel.GetMeterProvider() with no provider
	// installed (Config.Metrics), hub-sdk through an OpenTelemetry SDK
	// provider with a periodic reader, hub-notel not at all
	// (Config.NoTelemetry).
	transportHubSDK    = "hub-sdk"
	transportHubNoTel  = "hub-notel"
	transportHubGlobal = "hub-global"
	// hub-sdk-wlat is hub-sdk with A80's write latencies on
	// (SO_TIMESTAMPING on one write in 1000, telemetry.WithWriteLatency).
	transportHubSDKWLat = "hub-sdk-wlat"
	// hub-sdkprod is hub-sdk with the syscall-size histograms exported by
	// telemetry/sdkproducer's metric.Producer instead of the SDK's
	// histograms (no SDK Record per syscall).
	transportHubSDKProd = "hub-sdkprod"
	// hub-shared is hub with the server and the client of one process on
	// one hub (one poller.New), as a process that uses grpcopt's defaults
	// on both sides has them (both on poller.Default()). With -setup
	// server or client it is hub.
	transportHubShared = "hub-shared"
)

func knownTransport(name string) bool {
	switch name = baseTransport(name); name {
	case transportStd, transportThreads, transportHubSDK, transportHubNoTel, transportHubSDKWLat, transportHubGlobal, transportHubSDKProd, transportHubShared, transportHubPaired:
		return true
	}
	return groupSize(name) > 0
}

// altSuffix marks a transport whose runs are made by the -alt binary, a
// hubio-bench built from another commit: "hub@alt" is hub as that build has
// it, interleaved round by round with this build's "hub" (a before/after
// A/B in one run). The -alt binary must understand this build's jobs (build
// it from this bench/ with the other commit's library).
const altSuffix = "@alt"

// baseTransport is name without altSuffix: the transport the child sets up.
func baseTransport(name string) string { return strings.TrimSuffix(name, altSuffix) }

// isAlt reports whether name's runs are the -alt binary's.
func isAlt(name string) bool { return strings.HasSuffix(name, altSuffix) }

// sides says which ends of the gRPC conns a process puts on the transport
// under test (see -setup): both (today's set-up, one process), or the
// server or the client alone, the other end being package net in another
// process.
type sides int

const (
	sideServer sides = 1 << iota // the server: listener and server options
	sideClient                   // the client: dial options
	sideBoth   = sideServer | sideClient
)

// endpoints is one transport's server listener and options and its client
// dial options, set up inside a child process; with sides other than
// sideBoth, only one of the two.
type endpoints struct {
	lis        net.Listener // nil without sideServer
	serverOpts []grpc.ServerOption
	dialOpts   []grpc.DialOption // without sideClient: package net's
	// addr is the server's address: lis's, or the other process's server
	// without sideServer (set by the caller).
	addr string
	// close releases what the transport holds beyond the listener and the
	// conns (the hubs). Call it after the server and clients are closed.
	close func()
	// hubs are the hub transport's hubs (server's, then client's, for the
	// sides set up); none for the other transports.
	hubs []*poller.Hub
}

// hubStats sums the Stats of e's hubs.
func (e *endpoints) hubStats() poller.Stats {
	var sum poller.Stats
	for _, h := range e.hubs {
		st := h.Stats()
		sum.Iterations += st.Iterations
		sum.Events += st.Events
	}
	return sum
}

// target is the address grpc.NewClient dials; passthrough hands it to the
// dialer as it is, without a resolver.
func (e *endpoints) target() string { return "passthrough:///" + e.addr }

// newEndpoints sets up transport name on 127.0.0.1 for the sides given;
// the other side, if any, stays package net's (grpc-go's defaults).
//
// The hub transport uses two hubs from poller.New, one for the server and
// one for the client, as a server and a client in two processes would have;
// hub-shared puts both on one, as grpcopt's defaults do in one process (a
// gateway or proxy that sets no Config.Hub).
func newEndpoints(name string, on sides) (*endpoints, error) {
	e := &endpoints{
		dialOpts: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		close:    func() {},
	}
	srvSide, cliSide := on&sideServer != 0, on&sideClient != 0
	const addr = "127.0.0.1:0"
	var err error
	switch name {
	case transportStd:
		if srvSide {
			e.lis, err = net.Listen("tcp", addr)
		}
	case transportHub, transportHubSDK, transportHubNoTel, transportHubSDKWLat, transportHubGlobal, transportHubSDKProd, transportHubShared:
		var serverHub, clientHub *poller.Hub
		closeHubs := func() {
			for _, h := range e.hubs {
				h.Close()
			}
		}
		if srvSide {
			if serverHub, err = poller.New(); err != nil {
				return nil, err
			}
			e.hubs = append(e.hubs, serverHub)
		}
		if cliSide && name == transportHubShared && serverHub != nil {
			clientHub = serverHub
		} else if cliSide {
			if clientHub, err = poller.New(); err != nil {
				closeHubs()
				return nil, err
			}
			e.hubs = append(e.hubs, clientHub)
		}
		server, client := grpcopt.Config{Hub: serverHub}, grpcopt.Config{Hub: clientHub}
		var mp *sdkmetric.MeterProvider
		switch name {
		case transportHubSDK:
			// A reader that collects every second: the cost measured is
			// recording and collecting (telemetry hands the syscall sizes
			// to the SDK at collection).
			mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(collectingReader()))
			server.MeterProvider, client.MeterProvider = mp, mp
		case transportHubSDKWLat:
			mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(collectingReader()))
			var tel *telemetry.Telemetry
			if tel, err = telemetry.New(telemetry.WithMeterProvider(mp), telemetry.WithWriteLatency(0)); err != nil {
				closeHubs()
				return nil, err
			}
			server.Telemetry, client.Telemetry = tel, tel
		case transportHubSDKProd:
			prod := sdkproducer.New(nil)
			mp = sdkmetric.NewMeterProvider(sdkmetric.WithReader(collectingReader(sdkmetric.WithProducer(prod))))
			var tel *telemetry.Telemetry
			if tel, err = telemetry.New(telemetry.WithMeterProvider(mp)); err != nil {
				closeHubs()
				return nil, err
			}
			if err = prod.Attach(tel); err != nil {
				closeHubs()
				return nil, err
			}
			server.Telemetry, client.Telemetry = tel, tel
		case transportHubNoTel:
			server.NoTelemetry, client.NoTelemetry = true, true
		case transportHubGlobal:
			server.Metrics, client.Metrics = true, true
		}
		e.close = func() {
			closeHubs()
			if mp != nil {
				mp.Shutdown(context.Background())
			}
		}
		if srvSide {
			if e.lis, err = server.Listen("tcp", addr); err != nil {
				e.close()
				return nil, err
			}
			e.serverOpts = append(e.serverOpts, server.ServerOption(nil))
		}
		if cliSide {
			e.dialOpts = append(e.dialOpts, client.DialOption())
		}
	case transportHubPaired:
		err = newPairedEndpoints(e, on)
	case transportThreads:
		if srvSide {
			var l *threads.Listener
			if l, err = threads.Listen(addr); err == nil {
				e.lis = l
			}
		}
		if cliSide {
			e.dialOpts = append(e.dialOpts, grpc.WithContextDialer(threads.Dial))
		}
	default:
		if n := groupSize(name); n > 1 {
			err = newGroupEndpoints(e, n, on)
			break
		}
		return nil, fmt.Errorf("unknown transport %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if e.lis != nil {
		e.addr = e.lis.Addr().String()
	}
	return e, nil
}

// collectingReader is hub-sdk's reader: it collects every second (15 to 60
// times as often as a Prometheus scrape, so the cost of collecting is not
// understated) and drops what it collects.
func collectingReader(opts ...sdkmetric.PeriodicReaderOption) sdkmetric.Reader {
	return sdkmetric.NewPeriodicReader(discardExporter{}, append([]sdkmetric.PeriodicReaderOption{sdkmetric.WithInterval(time.Second)}, opts...)...)
}

// discardExporter is an sdkmetric.Exporter that drops every export.
type discardExporter struct{}

func (discardExporter) Temporality(k sdkmetric.InstrumentKind) metricdata.Temporality {
	return sdkmetric.DefaultTemporalitySelector(k)
}

func (discardExporter) Aggregation(k sdkmetric.InstrumentKind) sdkmetric.Aggregation {
	return sdkmetric.DefaultAggregationSelector(k)
}

func (discardExporter) Export(context.Context, *metricdata.ResourceMetrics) error { return nil }
func (discardExporter) ForceFlush(context.Context) error                          { return nil }
func (discardExporter) Shutdown(context.Context) error                            { return nil }
