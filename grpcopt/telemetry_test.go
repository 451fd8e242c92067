package grpcopt_test

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.opentelemetry.io/otel"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/testutil"
)

// TestConfigMeterProviderGetsRPCMetrics checks that the options instrument
// the hub and both ends of a gRPC connection through Config.MeterProvider,
// and that NoTelemetry records nothing.
func TestConfigMeterProviderGetsRPCMetrics(t *testing.T) {
	for _, off := range []bool{false, true} {
		reader := sdkmetric.NewManualReader()
		mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
		t.Cleanup(func() { mp.Shutdown(context.Background()) })
		h := hubtest.NewHubUnchecked(t)
		cfg := grpcopt.Config{Hub: h, MeterProvider: mp, NoTelemetry: off}

		lis, err := cfg.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serveEcho(t, lis)
		cc, err := grpc.NewClient(lis.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()), cfg.DialOption())
		if err != nil {
			t.Fatal(err)
		}
		ec := testutil.NewEchoClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		for range 10 {
			if _, err := ec.Unary(ctx, make([]byte, 1000)); err != nil {
				t.Fatal(err)
			}
		}
		cancel()

		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		names := map[string]metricdata.Aggregation{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				names[m.Name] = m.Data
			}
		}
		created := int64(0)
		if s, ok := names[telemetry.MetricConnectionsCreated].(metricdata.Sum[int64]); ok {
			for _, dp := range s.DataPoints {
				created += dp.Value
			}
		}
		if off {
			if created != 0 {
				t.Errorf("NoTelemetry: connections_created = %d, want nothing recorded", created)
			}
		} else {
			if created != 2 {
				t.Errorf("connections_created = %d after one client conn to one server, want 2", created)
			}
			for _, name := range []string{telemetry.MetricWriteSize, telemetry.MetricReadSize, telemetry.MetricHubUtilization} {
				if _, ok := names[name]; !ok {
					t.Errorf("no %s after 10 RPCs", name)
				}
			}
		}
		cc.Close()
	}
}

// globalSDK is the SDK provider installed as the global one, once per test
// binary: the global provider delegates to the first one installed only, so
// a second install (go test -count=2) would never see a record.
var globalSDK struct {
	once   sync.Once
	reader *sdkmetric.ManualReader
}

// globalSDKReader installs the global SDK provider on first use (nothing
// else in this binary records through it) and returns its reader.
func globalSDKReader() *sdkmetric.ManualReader {
	globalSDK.once.Do(func() {
		globalSDK.reader = sdkmetric.NewManualReader()
		otel.SetMeterProvider(sdkmetric.NewMeterProvider(sdkmetric.WithReader(globalSDK.reader)))
	})
	return globalSDK.reader
}

// TestTelemetryIsOptIn: a Config that names no provider instruments
// nothing (the hub never gets an observer, so its LoopTime stays at zero),
// and Metrics records through the global provider, into the SDK provider
// the program installs with otel.SetMeterProvider.
func TestTelemetryIsOptIn(t *testing.T) {
	reader := globalSDKReader()
	created := func() int64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		n := int64(0)
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == telemetry.MetricConnectionsCreated {
					for _, dp := range s.DataPoints {
						n += dp.Value
					}
				}
			}
		}
		return n
	}
	for _, on := range []bool{false, true} {
		h := hubtest.NewHubUnchecked(t)
		cfg := grpcopt.Config{Hub: h, Metrics: on}
		before := created()
		lis, err := cfg.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		serveEcho(t, lis)
		cc, err := grpc.NewClient(lis.Addr().String(),
			grpc.WithTransportCredentials(insecure.NewCredentials()), cfg.DialOption())
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		if _, err := testutil.NewEchoClient(cc).Unary(ctx, make([]byte, 100)); err != nil {
			t.Fatal(err)
		}
		cancel()
		busy, idle := h.LoopTime()
		n := created() - before
		cc.Close()
		if !on {
			if busy != 0 || idle != 0 || n != 0 {
				t.Errorf("default Config: hub LoopTime %v, %v and %d conns created in the SDK; want nothing instrumented", busy, idle, n)
			}
			continue
		}
		if busy+idle == 0 {
			t.Errorf("Metrics: the hub has no observer (LoopTime zero)")
		}
		if n != 2 {
			t.Errorf("Metrics: connections_created grew by %d after one client conn to one server, want 2", n)
		}
	}
}

// TestGroupTelemetryLabelsEachHub: with Config.Group, the first conn makes
// every hub of the group report, each labelled with its index, even the
// hubs that hold no conn yet.
func TestGroupTelemetryLabelsEachHub(t *testing.T) {
	hubtest.Check(t)
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	g := newGroup(t, 3)
	addr := startGroupEcho(t, groupServers[2], grpcopt.Config{Group: g, MeterProvider: mp})
	// One conn from a package net client: it lands on one hub of the group.
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("labelled")); err != nil {
		t.Fatal(err)
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	indexes := map[int64]bool{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name != telemetry.MetricHubUtilization {
				continue
			}
			for _, dp := range m.Data.(metricdata.Gauge[float64]).DataPoints {
				if i, ok := dp.Attributes.Value(telemetry.AttrHubIndex); ok {
					indexes[i.AsInt64()] = true
				} else {
					t.Errorf("a utilization series without %s: %v", telemetry.AttrHubIndex, dp.Attributes.ToSlice())
				}
			}
		}
	}
	if len(indexes) != 3 || !indexes[0] || !indexes[1] || !indexes[2] {
		t.Errorf("utilization series for hub indexes %v, want 0, 1 and 2", indexes)
	}
}
