// Command helloworld runs a gRPC greeter server and client over one hubio
// hub, in one process, then prints the reply and the hub's counters.
//
//	go run ./examples/helloworld
//
// The server listens with grpcopt.Listen and its conns are moved onto the
// hub by grpcopt.ServerOption; the client dials with grpcopt.DialOption.
// Every readiness wait of both sides goes through the hub's event loop.
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"os"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

func main() {
	name := flag.String("name", "world", "who to greet")
	addr := flag.String("addr", "127.0.0.1:0", "listen address (host:port, or unix:/path)")
	flag.Parse()
	if err := run(*addr, *name); err != nil {
		log.Fatal(err)
	}
}

func run(addr, name string) error {
	hub, err := poller.New()
	if err != nil {
		return err
	}
	defer hub.Close()

	network, address := grpcopt.ParseTarget(addr)
	lis, err := grpcopt.Listen(hub, network, address)
	if err != nil {
		return err
	}
	srv := grpc.NewServer(grpcopt.ServerOption(hub, nil))
	srv.RegisterService(&greeterDesc, greeter{})
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()

	target := lis.Addr().String()
	if network == "unix" {
		target = "unix://" + target
	}
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcopt.DialOption(hub))
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, "/helloworld.Greeter/SayHello", wrapperspb.String(name), reply); err != nil {
		return err
	}
	fmt.Println("greeting:", reply.Value)

	cc.Close()
	srv.GracefulStop()
	if err := <-served; err != nil {
		return err
	}
	s := hub.Stats()
	fmt.Fprintf(os.Stdout, "hub: %d loop iterations, %d readiness events, %d wakeups (%d eventfd writes), %d callbacks, %d timers, %d fds registered\n",
		s.Iterations, s.Events, s.Signals, s.Writes, s.Callbacks, s.Timers, s.Registered)
	return nil
}

// greeter implements helloworld.Greeter/SayHello with
// google.protobuf.StringValue messages, so no generated code is needed.
type greeter struct{}

func (greeter) SayHello(_ context.Context, in *wrapperspb.StringValue) (*wrapperspb.StringValue, error) {
	return wrapperspb.String("Hello " + in.Value), nil
}

var greeterDesc = grpc.ServiceDesc{
	ServiceName: "helloworld.Greeter",
	HandlerType: (*interface {
		SayHello(context.Context, *wrapperspb.StringValue) (*wrapperspb.StringValue, error)
	})(nil),
	Methods: []grpc.MethodDesc{{
		MethodName: "SayHello",
		Handler: func(srv any, ctx context.Context, dec func(any) error, _ grpc.UnaryServerInterceptor) (any, error) {
			in := new(wrapperspb.StringValue)
			if err := dec(in); err != nil {
				return nil, err
			}
			return srv.(greeter).SayHello(ctx, in)
		},
	}},
}
