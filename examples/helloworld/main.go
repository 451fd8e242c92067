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
	"io"
	"log"
	"os"
	"strings"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

func main() {
	name := flag.String("name", "world", "who to greet")
	addr := flag.String("addr", "127.0.0.1:0", "listen address: host:port, unix:path, unix:@name or unix-abstract:name")
	flag.Parse()
	if err := run(os.Stdout, *addr, *name); err != nil {
		log.Fatal(err)
	}
}

// run serves the greeter on addr through a hub, calls it once as a client on
// the same hub, and prints the reply and what the hub did to w.
func run(w io.Writer, addr, name string) error {
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
	defer srv.Stop() // on an early return; after GracefulStop it does nothing

	cc, err := grpc.NewClient(clientTarget(network, lis.Addr().String()),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcopt.DialOption(hub))
	if err != nil {
		return err
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply := new(wrapperspb.StringValue)
	if err := cc.Invoke(ctx, "/helloworld.Greeter/SayHello", wrapperspb.String(name), reply); err != nil {
		return err
	}
	fmt.Fprintln(w, "greeting:", reply.Value)
	during := hub.Stats()

	cc.Close()
	srv.GracefulStop()
	if err := <-served; err != nil {
		return err
	}
	after := hub.Stats()
	fmt.Fprintf(w, "hub: %d sockets on the hub during the call (listener, server conn, client conn), %d after shutdown; "+
		"%d readiness events handed to waiting goroutines in %d loop iterations\n",
		during.Registered, after.Registered, after.Events, after.Iterations)
	return nil
}

// clientTarget is the grpc-go target for the listener's address: grpc-go
// reads "unix:path" (relative or absolute) and "unix-abstract:name".
func clientTarget(network, laddr string) string {
	if network != "unix" {
		return laddr
	}
	if name, ok := strings.CutPrefix(laddr, "@"); ok {
		return "unix-abstract:" + name
	}
	return "unix:" + laddr
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
