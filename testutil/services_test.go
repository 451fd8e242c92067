package testutil_test

import (
	"context"
	"io"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	testpb "google.golang.org/grpc/interop/grpc_testing"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// testService is grpc-go's generated interop TestService, answering
// UnaryCall and FullDuplexCall.
type testService struct {
	testpb.UnimplementedTestServiceServer
}

func (testService) UnaryCall(_ context.Context, in *testpb.SimpleRequest) (*testpb.SimpleResponse, error) {
	return &testpb.SimpleResponse{Payload: &testpb.Payload{Body: make([]byte, in.GetResponseSize())}}, nil
}

func (testService) FullDuplexCall(s testpb.TestService_FullDuplexCallServer) error {
	for {
		in, err := s.Recv()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
		if err := s.Send(&testpb.StreamingOutputCallResponse{Payload: in.GetPayload()}); err != nil {
			return err
		}
	}
}

// TestWithServicesHostsGeneratedServices: services registered with
// WithServices are served beside the echo service, reached through
// Echo.ClientConn by their generated clients, on the hub, and under the
// harness's faults.
func TestWithServicesHostsGeneratedServices(t *testing.T) {
	hs := health.NewServer()
	e := testutil.StartEcho(t,
		testutil.WithServices(func(s grpc.ServiceRegistrar) { healthpb.RegisterHealthServer(s, hs) }),
		testutil.WithServices(func(s grpc.ServiceRegistrar) { testpb.RegisterTestServiceServer(s, testService{}) }),
		testutil.WithServerFaults(testutil.Faults{}),
	)
	ctx := rpcContext(t)
	resp, err := healthpb.NewHealthClient(e.ClientConn).Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil || resp.GetStatus() != healthpb.HealthCheckResponse_SERVING {
		t.Fatalf("health Check = %v, %v; want SERVING", resp, err)
	}
	tc := testpb.NewTestServiceClient(e.ClientConn)
	out, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{ResponseSize: 1000})
	if err != nil || len(out.GetPayload().GetBody()) != 1000 {
		t.Fatalf("UnaryCall = %d bytes, %v; want 1000", len(out.GetPayload().GetBody()), err)
	}
	checkEcho(t, e) // the echo service is still there
	if s := e.Hub.Stats(); s.Conns != 2 {
		t.Errorf("hub Conns = %d, want 2 (the client's and the server's)", s.Conns)
	}
	if n := len(e.ServerFaults.Conns()); n != 1 {
		t.Fatalf("fault conns: %d, want 1", n)
	}

	// A reset server conn fails the stream in flight; the channel reconnects.
	s, err := tc.FullDuplexCall(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(&testpb.StreamingOutputCallRequest{Payload: &testpb.Payload{Body: []byte("a")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	reset := e.ServerFaults.Conns()[0]
	if err := reset.Reset(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
		t.Fatalf("Recv after a reset = %v, want Unavailable", err)
	}
	if _, err := tc.UnaryCall(ctx, &testpb.SimpleRequest{}, grpc.WaitForReady(true)); err != nil {
		t.Fatalf("UnaryCall after the reset: %v", err)
	}
	if conns := e.ServerFaults.Conns(); len(conns) != 1 || conns[0] == reset {
		t.Errorf("live fault conns after the reconnect: %d, want 1, not the reset one", len(conns))
	}
}

// TestResetThroughGRPC is what FaultConn.Reset's doc tells a gRPC test to
// assert: whichever side's conn is reset, the RPC in flight fails with
// codes.Unavailable (its message varies: EOF, connection reset by peer,
// use of closed network connection), and an RPC with WaitForReady then
// succeeds on a new conn.
func TestResetThroughGRPC(t *testing.T) {
	for _, side := range []string{"server", "client"} {
		t.Run("a reset "+side+" conn", func(t *testing.T) {
			e := testutil.StartEcho(t, testutil.WithServerFaults(testutil.Faults{}), testutil.WithClientFaults(testutil.Faults{}))
			ctx := rpcContext(t)
			s, err := e.Client.Stream(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if err := s.Send([]byte("a")); err != nil {
				t.Fatal(err)
			}
			if _, err := s.Recv(); err != nil {
				t.Fatal(err)
			}
			fc := e.ServerFaults.Conns()[0]
			if side == "client" {
				fc = e.ClientFaults.Conns()[0]
			}
			if err := fc.Reset(); err != nil {
				t.Fatal(err)
			}
			_, err = s.Recv()
			if status.Code(err) != codes.Unavailable {
				t.Fatalf("Recv after the reset = %v, want Unavailable", err)
			}
			t.Logf("the client saw: %v", err)
			if _, err := e.Client.Unary(ctx, []byte("again"), grpc.WaitForReady(true)); err != nil {
				t.Fatalf("Unary after the reset: %v", err)
			}
			// The server closes the old conn once it reads the reset: wait.
			newOnly := func() bool {
				conns := e.ServerFaults.Conns()
				return len(conns) == 1 && conns[0] != fc
			}
			if !hubtest.WaitFor(wait, newOnly) {
				t.Errorf("live server conns after the reconnect: %d, want 1 new one", len(e.ServerFaults.Conns()))
			}
		})
	}
}
