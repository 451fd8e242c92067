package grpcopt_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/interop"
	testgrpc "google.golang.org/grpc/interop/grpc_testing"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

func TestSmoke(t *testing.T) {
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	for _, useListen := range []bool{false, true} {
		var lis net.Listener
		if useListen {
			lis, err = grpcopt.Listen(h, "tcp", "127.0.0.1:0")
		} else {
			lis, err = net.Listen("tcp", "127.0.0.1:0")
		}
		if err != nil {
			t.Fatal(err)
		}
		s := grpc.NewServer(grpcopt.ServerOption(h, nil))
		testgrpc.RegisterTestServiceServer(s, interop.NewTestServer())
		go s.Serve(lis)
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), grpcopt.DialOption(h))
		if err != nil {
			t.Fatal(err)
		}
		tc := testgrpc.NewTestServiceClient(cc)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		interop.DoEmptyUnaryCall(ctx, tc)
		interop.DoLargeUnaryCall(ctx, tc)
		interop.DoPingPong(ctx, tc)
		cancel()
		cc.Close()
		s.Stop()
		t.Logf("stats %+v", h.Stats())
	}
}
