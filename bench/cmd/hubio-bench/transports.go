package main

import (
	"context"
	"fmt"
	"net"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/bench/internal/threads"
	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
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
)

func knownTransport(name string) bool {
	switch name {
	case transportStd, transportThreads, transportHubSDK, transportHubNoTel, transportHubSDKWLat, transportHubGlobal:
		return true
	}
	return groupSize(name) > 0
}

// endpoints is one transport's server listener and options and its client
// dial options, set up inside a child process.
type endpoints struct {
	lis        net.Listener
	serverOpts []grpc.ServerOption
	dialOpts   []grpc.DialOption
	// close releases what the transport holds beyond the listener and the
	// conns (the hubs). Call it after the server and clients are closed.
	close func()
	// hubs are the hub transport's hubs (server's, client's); none for the
	// other transports.
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
func (e *endpoints) target() string { return "passthrough:///" + e.lis.Addr().String() }

// newEndpoints sets up transport name on 127.0.0.1.
//
// The hub transport uses two hubs from poller.New, one for the server and
// one for the client, as a server and a client in two processes would have:
// a shared hub would run both sides' readiness through one loop goroutine,
// which no real deployment does.
func newEndpoints(name string) (*endpoints, error) {
	e := &endpoints{
		dialOpts: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		close:    func() {},
	}
	const addr = "127.0.0.1:0"
	var err error
	switch name {
	case transportStd:
		e.lis, err = net.Listen("tcp", addr)
	case transportHub, transportHubSDK, transportHubNoTel, transportHubSDKWLat, transportHubGlobal:
		var serverHub, clientHub *poller.Hub
		if serverHub, err = poller.New(); err != nil {
			return nil, err
		}
		if clientHub, err = poller.New(); err != nil {
			serverHub.Close()
			return nil, err
		}
		e.hubs = []*poller.Hub{serverHub, clientHub}
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
				serverHub.Close()
				clientHub.Close()
				return nil, err
			}
			server.Telemetry, client.Telemetry = tel, tel
		case transportHubNoTel:
			server.NoTelemetry, client.NoTelemetry = true, true
		case transportHubGlobal:
			server.Metrics, client.Metrics = true, true
		}
		e.close = func() {
			serverHub.Close()
			clientHub.Close()
			if mp != nil {
				mp.Shutdown(context.Background())
			}
		}
		if e.lis, err = server.Listen("tcp", addr); err != nil {
			e.close()
			return nil, err
		}
		e.serverOpts = append(e.serverOpts, server.ServerOption(nil))
		e.dialOpts = append(e.dialOpts, client.DialOption())
	case transportThreads:
		var l *threads.Listener
		if l, err = threads.Listen(addr); err == nil {
			e.lis = l
		}
		e.dialOpts = append(e.dialOpts, grpc.WithContextDialer(threads.Dial))
	default:
		if n := groupSize(name); n > 1 {
			err = newGroupEndpoints(e, n)
			break
		}
		return nil, fmt.Errorf("unknown transport %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return e, nil
}

// collectingReader is hub-sdk's reader: it collects every second (15 to 60
// times as often as a Prometheus scrape, so the cost of collecting is not
// understated) and drops what it collects.
func collectingReader() sdkmetric.Reader {
	return sdkmetric.NewPeriodicReader(discardExporter{}, sdkmetric.WithInterval(time.Second))
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
