//go:build linux

package grpcopt_test

import (
	"context"
	"fmt"
	"log"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// A grpc-go server and client on one hub: Listen and ServerOption for the
// server, DialOption for the client.
func Example() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	lis, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpcopt.ServerOption(h, nil)) // nil: insecure; or TLS credentials
	testutil.RegisterEchoServer(srv, nil)
	go srv.Serve(lis)
	defer srv.Stop()

	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcopt.DialOption(h))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	out, err := testutil.NewEchoClient(cc).Unary(context.Background(), []byte("hello"))
	fmt.Printf("%s %v\n", out, err)
	// Output: hello <nil>
}

// ParseTarget splits the addresses grpc-go hands a custom dialer.
func ExampleParseTarget() {
	for _, a := range []string{"127.0.0.1:50051", "unix:///run/app.sock", "unix-abstract:app"} {
		fmt.Println(grpcopt.ParseTarget(a))
	}
	// Output:
	// tcp 127.0.0.1:50051
	// unix /run/app.sock
	// unix @app
}
