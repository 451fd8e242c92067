package grpcopt_test

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// openEchoStream opens an echo stream on a hub client and completes one
// round trip on it, so the server's handler is known to be running.
func openEchoStream(t *testing.T, ctx context.Context, c *testutil.EchoClient) *testutil.EchoStream {
	t.Helper()
	st, err := c.Stream(ctx)
	if err != nil {
		t.Fatalf("opening a stream: %v", err)
	}
	roundTrip(t, st, []byte("first"))
	return st
}

// serveOpenStream starts an echo server of kind ss on a hub, with a leak
// check at cleanup, and returns it with a stream opened to it by a client on
// another hub (one round trip done).
func serveOpenStream(t *testing.T, ss serverSetup) (*grpc.Server, *testutil.EchoStream) {
	t.Helper()
	hubtest.Check(t) // first: its cleanup runs after everything below is closed
	serverHub, clientHub := hubtest.NewHubUnchecked(t), hubtest.NewHubUnchecked(t)
	srv, addr := startEcho(t, ss, serverHub)
	c := testutil.NewEchoClient(dial(t, addr, clientHub, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return srv, openEchoStream(t, ctx, c)
}

// roundTrip sends msg on st and checks it comes back.
func roundTrip(t *testing.T, st *testutil.EchoStream, msg []byte) {
	t.Helper()
	if err := st.Send(msg); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got, err := st.Recv()
	if err != nil {
		t.Fatalf("Recv: %v", err)
	}
	if !bytes.Equal(got, msg) {
		t.Fatalf("Recv = %q, want %q", got, msg)
	}
}

// TestGracefulStopWaitsForOpenStreams checks that GracefulStop on a server
// whose conns live on a hub returns only once its open stream has ended,
// that the stream keeps working meanwhile, and that nothing leaks after.
func TestGracefulStopWaitsForOpenStreams(t *testing.T) {
	for _, ss := range hubServers {
		t.Run("on "+ss.name, func(t *testing.T) {
			srv, st := serveOpenStream(t, ss)

			stopped := make(chan struct{})
			go func() {
				srv.GracefulStop()
				close(stopped)
			}()
			// GracefulStop must still be waiting for the stream: give it
			// a generous moment to return early, which would be the bug.
			select {
			case <-stopped:
				t.Fatal("GracefulStop returned while a stream was open")
			case <-time.After(500 * time.Millisecond):
			}
			roundTrip(t, st, []byte("during GracefulStop"))
			if err := st.CloseSend(); err != nil {
				t.Fatalf("CloseSend: %v", err)
			}
			if _, err := st.Recv(); err != io.EOF {
				t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
			}
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("GracefulStop did not return within 5s of the last stream ending")
			}
		})
	}
}

// TestStopEndsOpenStreams checks that Stop on a server whose conns live on
// a hub ends an open stream at once, that the client sees the stream fail
// as Unavailable or Canceled, and that nothing leaks after.
func TestStopEndsOpenStreams(t *testing.T) {
	for _, ss := range hubServers {
		t.Run("on "+ss.name, func(t *testing.T) {
			srv, st := serveOpenStream(t, ss)

			stopped := make(chan struct{})
			go func() {
				srv.Stop()
				close(stopped)
			}()
			select {
			case <-stopped:
			case <-time.After(5 * time.Second):
				t.Fatal("Stop did not return within 5s with a stream open")
			}
			recvErr := make(chan error, 1)
			go func() {
				_, err := st.Recv()
				recvErr <- err
			}()
			select {
			case err := <-recvErr:
				if code := status.Code(err); code != codes.Unavailable && code != codes.Canceled {
					t.Fatalf("Recv after Stop = %v (code %v), want Unavailable or Canceled", err, code)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the open stream did not end within 5s of Stop")
			}
		})
	}
}
