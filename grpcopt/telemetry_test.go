package grpcopt_test

import (
	"context"
	"testing"
	"time"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
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
		h := newHub(t)
		cfg := grpcopt.Config{Hub: h, MeterProvider: mp, NoTelemetry: off}

		lis, err := cfg.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		srv := grpc.NewServer()
		testutil.RegisterEchoServer(srv, nil)
		serve(t, srv, lis)
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
