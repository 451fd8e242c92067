package sdkproducer_test

import (
	"context"
	"fmt"

	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"

	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/telemetry/sdkproducer"
)

// A program whose hubio telemetry records through the global provider
// (grpcopt's Config.Metrics) passes the producer to each reader of the
// provider it installs. Here a ManualReader stands for an exporter's
// PeriodicReader.
func Example() {
	tel, err := telemetry.ForProvider(nil) // what Config.Metrics records through
	if err != nil {
		panic(err)
	}
	reader := sdkmetric.NewManualReader(sdkmetric.WithProducer(sdkproducer.New(tel)))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	defer mp.Shutdown(context.Background())
	// otel.SetMeterProvider(mp), then serve: conns' syscall sizes are
	// exported by the producer at each collection, with no SDK Record per
	// syscall.

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		panic(err)
	}
	fmt.Println("collected")
	// Output: collected
}
