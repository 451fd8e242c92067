// Command prometheus serves hubio's metrics on /metrics through the
// OpenTelemetry Prometheus exporter while a gRPC server and client talk over
// one hub in the same process.
//
//	go run . -metrics 127.0.0.1:9464 -rpcs 0
//	curl -s 127.0.0.1:9464/metrics | grep -E '^(grpc_tcp|hubio_hub)'
//
// The program installs an SDK MeterProvider as the global one
// (otel.SetMeterProvider), which is where grpcopt records with
// Config.Metrics (telemetry is off by default); it builds its own
// telemetry.Telemetry instead (Config.Telemetry) only to sample TCP_INFO
// more often than A80's 5 minutes, so that a short demo shows the
// grpc.tcp.* TCP_INFO metrics.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"time"

	promclient "github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/telemetry"
)

func main() {
	metricsAddr := flag.String("metrics", "127.0.0.1:9464", "address of the /metrics HTTP endpoint")
	rpcs := flag.Int("rpcs", 0, "RPCs to make before exiting; 0 runs until interrupted")
	interval := flag.Duration("tcpinfo", 5*time.Second, "TCP_INFO sampling interval (A80's default is 5m)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	d, err := start(*metricsAddr, *interval)
	if err != nil {
		log.Fatal(err)
	}
	defer d.close()
	fmt.Printf("serving http://%s/metrics\n", d.metricsAddr)
	for i := 0; *rpcs == 0 || i < *rpcs; i++ {
		if err := d.call(ctx, 1024); err != nil {
			if ctx.Err() != nil {
				return
			}
			log.Fatal(err)
		}
		if *rpcs == 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
}

// demo is a running server, client and /metrics endpoint.
type demo struct {
	metricsAddr string
	hub         *poller.Hub
	mp          *sdkmetric.MeterProvider
	srv         *grpc.Server
	served      chan error
	cc          *grpc.ClientConn
	web         *http.Server
	webDone     chan error
}

// start sets up the exporter, the global MeterProvider, the hub, an echo
// gRPC server and a client, and the /metrics endpoint on metricsAddr.
func start(metricsAddr string, tcpInfo time.Duration) (*demo, error) {
	reg := promclient.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	d := &demo{mp: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))}
	otel.SetMeterProvider(d.mp)
	tel, err := telemetry.New(telemetry.WithTCPInfoInterval(tcpInfo))
	if err != nil {
		return nil, err
	}
	if d.hub, err = poller.New(); err != nil {
		return nil, err
	}
	cfg := grpcopt.Config{Hub: d.hub, Telemetry: tel}
	lis, err := cfg.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		d.close()
		return nil, err
	}
	d.srv = grpc.NewServer(cfg.ServerOption(nil))
	d.srv.RegisterService(&echoDesc, nil)
	d.served = make(chan error, 1)
	go func() { d.served <- d.srv.Serve(lis) }()
	d.cc, err = grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), cfg.DialOption())
	if err != nil {
		d.close()
		return nil, err
	}

	web, err := net.Listen("tcp", metricsAddr)
	if err != nil {
		d.close()
		return nil, err
	}
	d.metricsAddr = web.Addr().String()
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	d.web = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	d.webDone = make(chan error, 1)
	go func() { d.webDone <- d.web.Serve(web) }()
	return d, nil
}

// call makes one echo RPC with a payload of n bytes.
func (d *demo) call(ctx context.Context, n int) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out := new(wrapperspb.BytesValue)
	return d.cc.Invoke(ctx, "/echo.Echo/Unary", wrapperspb.Bytes(make([]byte, n)), out)
}

// close stops everything start started, in reverse order.
func (d *demo) close() {
	if d.web != nil {
		d.web.Close()
		if err := <-d.webDone; !errors.Is(err, http.ErrServerClosed) {
			log.Print(err)
		}
	}
	if d.cc != nil {
		d.cc.Close()
	}
	if d.srv != nil {
		d.srv.Stop()
		<-d.served
	}
	if d.hub != nil {
		d.hub.Close()
	}
	d.mp.Shutdown(context.Background())
}

// echoDesc is a one-method service that returns its request.
var echoDesc = grpc.ServiceDesc{
	ServiceName: "echo.Echo",
	HandlerType: (*any)(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "Unary",
		Handler: func(_ any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.BytesValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return in, nil
		},
	}},
}
