package testutil_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

func rpcContext(t testing.TB) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	t.Cleanup(cancel)
	return ctx
}

// checkEcho makes a unary call and a three-message stream on e.
func checkEcho(t *testing.T, e *testutil.Echo) {
	t.Helper()
	ctx := rpcContext(t)
	got, err := e.Client.Unary(ctx, []byte("ping"))
	if err != nil || string(got) != "ping" {
		t.Fatalf("Unary = %q, %v; want %q", got, err, "ping")
	}
	s, err := e.Client.Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range []string{"a", "bb", strings.Repeat("c", 100<<10)} {
		if err := s.Send([]byte(m)); err != nil {
			t.Fatal(err)
		}
		got, err := s.Recv()
		if err != nil || string(got) != m {
			t.Fatalf("stream Recv = %d bytes, %v; want %d bytes", len(got), err, len(m))
		}
	}
	if err := s.CloseSend(); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != io.EOF {
		t.Fatalf("Recv after CloseSend = %v, want io.EOF", err)
	}
}

func TestEchoServesUnaryAndStream(t *testing.T) {
	for _, tc := range []struct {
		name string
		opts []testutil.EchoOption
	}{
		{"over TCP", nil},
		{"over a unix socket", []testutil.EchoOption{testutil.WithUnixSocket()}},
		{"with server faults", []testutil.EchoOption{testutil.WithServerFaults(testutil.Faults{})}},
		{"with client faults", []testutil.EchoOption{testutil.WithClientFaults(testutil.Faults{})}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := testutil.StartEcho(t, tc.opts...)
			checkEcho(t, e)
			if got := e.Hub.Stats().Registered; got < 2 {
				t.Errorf("hub has %d fds registered, want the server's and the client's conns", got)
			}
		})
	}
}

func TestEchoAddress(t *testing.T) {
	e := testutil.StartEcho(t)
	if a, ok := e.Addr.(*net.TCPAddr); !ok || !a.IP.IsLoopback() {
		t.Errorf("Addr = %v, want a loopback TCP address", e.Addr)
	}
	u := testutil.StartEcho(t, testutil.WithUnixSocket())
	if _, ok := u.Addr.(*net.UnixAddr); !ok || !strings.HasPrefix(u.Target, "unix://") {
		t.Errorf("Addr, Target = %v, %q, want a unix socket", u.Addr, u.Target)
	}
}

func TestEchoCleanup(t *testing.T) {
	t.Run("closes a hub it created and removes its socket", func(t *testing.T) {
		var e *testutil.Echo
		t.Run("harness", func(t *testing.T) {
			e = testutil.StartEcho(t, testutil.WithUnixSocket())
			checkEcho(t, e)
		})
		if !errors.Is(e.Hub.Err(), net.ErrClosed) {
			t.Errorf("hub after cleanup: Err() = %v, want closed", e.Hub.Err())
		}
		if _, err := os.Stat(e.Addr.String()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket file after cleanup: %v", err)
		}
		if err := e.Close(); err != nil {
			t.Errorf("second Close: %v", err)
		}
		testutil.VerifyNoLeaks(t)
	})
	t.Run("leaves a given hub open", func(t *testing.T) {
		h := hubtest.NewHub(t)
		t.Run("harness", func(t *testing.T) {
			e := testutil.StartEcho(t, testutil.WithHub(h), testutil.WithServerFaults(testutil.Faults{}))
			if e.Hub != h {
				t.Fatal("Echo.Hub is not the given hub")
			}
			checkEcho(t, e)
		})
		if err := h.Err(); err != nil {
			t.Errorf("given hub after cleanup: %v", err)
		}
		if n := h.Stats().Registered; n != 0 {
			t.Errorf("given hub still has %d fds registered after cleanup", n)
		}
	})
}

func TestEchoServerHook(t *testing.T) {
	e := testutil.StartEcho(t, testutil.WithEchoServer(&testutil.EchoServer{
		OnUnary: func(_ context.Context, in []byte) ([]byte, error) {
			if len(in) == 0 {
				return nil, status.Error(codes.InvalidArgument, "empty")
			}
			return bytes.ToUpper(in), nil
		},
	}))
	ctx := rpcContext(t)
	if got, err := e.Client.Unary(ctx, []byte("loud")); err != nil || string(got) != "LOUD" {
		t.Errorf("Unary = %q, %v", got, err)
	}
	if _, err := e.Client.Unary(ctx, nil); status.Code(err) != codes.InvalidArgument {
		t.Errorf("Unary(empty) = %v, want InvalidArgument", err)
	}
}

func TestEchoOptionsReachGRPC(t *testing.T) {
	var seen atomic.Int32
	count := func(ctx context.Context, req any, info *grpc.UnaryServerInfo, h grpc.UnaryHandler) (any, error) {
		seen.Add(1)
		return h(ctx, req)
	}
	var wrapped bool
	e := testutil.StartEcho(t,
		testutil.WithServerOptions(grpc.UnaryInterceptor(count)),
		testutil.WithDialOptions(grpc.WithUserAgent("harness-test")),
		testutil.WithListenerWrapper(func(l net.Listener) net.Listener { wrapped = true; return l }))
	if _, err := e.Client.Unary(rpcContext(t), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if seen.Load() != 1 || !wrapped {
		t.Errorf("interceptor ran %d times, listener wrapped: %v", seen.Load(), wrapped)
	}
}

func TestEchoServerFaults(t *testing.T) {
	t.Run("latency slows each call", func(t *testing.T) {
		const lat = 50 * time.Millisecond
		e := testutil.StartEcho(t, testutil.WithServerFaults(testutil.Faults{Latency: lat}))
		unaryTakesAtLeast(t, e, "a unary call with server latency", lat)
		if e.ServerFaults.Counts().Latency == 0 {
			t.Error("no write was delayed")
		}
	})

	t.Run("a reset fails the stream, and the client reconnects", func(t *testing.T) {
		e := testutil.StartEcho(t, testutil.WithServerFaults(testutil.Faults{}))
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
		conns := e.ServerFaults.Conns()
		if len(conns) != 1 {
			t.Fatalf("server has %d conns, want 1", len(conns))
		}
		if err := conns[0].Reset(); err != nil {
			t.Fatal(err)
		}
		if _, err := s.Recv(); status.Code(err) != codes.Unavailable {
			t.Errorf("Recv after a reset = %v, want Unavailable", err)
		}
		if _, err := e.Client.Unary(ctx, []byte("again"), grpc.WaitForReady(true)); err != nil {
			t.Errorf("Unary after a reset: %v", err)
		}
		if c := e.ServerFaults.Counts(); c.Reset != 1 {
			t.Errorf("Counts() = %+v, want 1 reset", c)
		}
	})

	t.Run("a half-open server makes calls time out", func(t *testing.T) {
		e := testutil.StartEcho(t, testutil.WithServerFaults(testutil.Faults{}))
		if _, err := e.Client.Unary(rpcContext(t), []byte("a")); err != nil {
			t.Fatal(err)
		}
		e.ServerFaults.Conns()[0].HalfOpen()
		ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
		defer cancel()
		if _, err := e.Client.Unary(ctx, []byte("b")); status.Code(err) != codes.DeadlineExceeded {
			t.Errorf("Unary to a half-open server = %v, want DeadlineExceeded", err)
		}
	})
}

// TestEchoKeepaliveDetectsAHalfOpenClient is what HalfOpen is for: the
// server's keepalive pings go unanswered, and the server drops the conn.
func TestEchoKeepaliveDetectsAHalfOpenClient(t *testing.T) {
	ended := make(chan error, 1)
	watch := func(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, h grpc.StreamHandler) error {
		err := h(srv, ss)
		ended <- err
		return err
	}
	e := testutil.StartEcho(t,
		testutil.WithClientFaults(testutil.Faults{}),
		testutil.WithServerOptions(
			grpc.StreamInterceptor(watch),
			grpc.KeepaliveParams(keepalive.ServerParameters{Time: time.Second, Timeout: 100 * time.Millisecond})))
	s, err := e.Client.Stream(rpcContext(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send([]byte("a")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	e.ClientFaults.Conns()[0].HalfOpen()
	select {
	case err := <-ended:
		if err == nil {
			t.Error("the server's stream ended cleanly, want a transport error")
		}
		atLeast(t, "keepalive detection", time.Since(start), 100*time.Millisecond)
	case <-time.After(wait):
		t.Fatal("the server never noticed the half-open client")
	}
}

// unaryTakesAtLeast checks that a unary call on e, after one to warm the
// conn up, takes at least d.
func unaryTakesAtLeast(t *testing.T, e *testutil.Echo, what string, d time.Duration) {
	t.Helper()
	ctx := rpcContext(t)
	if _, err := e.Client.Unary(ctx, []byte("warm up")); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	if _, err := e.Client.Unary(ctx, []byte("x")); err != nil {
		t.Fatal(err)
	}
	atLeast(t, what, time.Since(start), d)
}

func TestEchoClientFaults(t *testing.T) {
	const lat = 50 * time.Millisecond
	e := testutil.StartEcho(t, testutil.WithClientFaults(testutil.Faults{Latency: lat}))
	unaryTakesAtLeast(t, e, "a unary call with client latency", lat)
	if len(e.ClientFaults.Conns()) != 1 || e.ClientFaults.Counts().Latency == 0 {
		t.Errorf("client faults: %d conns, counts %+v", len(e.ClientFaults.Conns()), e.ClientFaults.Counts())
	}
}

func TestFaultDialerWithGRPCOptServer(t *testing.T) {
	// A hand-built server and client, as a user would wire them.
	h := hubtest.NewHub(t)
	l, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpcopt.ServerOption(h, nil))
	testutil.RegisterEchoServer(srv, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	defer func() { srv.Stop(); <-served }()
	d := testutil.NewFaultDialer(h, testutil.Faults{Bandwidth: 1 << 20})
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), d.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	got, err := testutil.NewEchoClient(cc).Unary(rpcContext(t), []byte("paced"))
	if err != nil || string(got) != "paced" {
		t.Fatalf("Unary = %q, %v", got, err)
	}
	if d.Counts().Bandwidth == 0 {
		t.Error("no write was paced")
	}
}

// TestRPCUnderLatencyTakesOneRoundTrip: with 50 ms of latency each way, a
// unary call takes one round trip, 100 ms, plus processing, whatever the
// writes: a 120 KiB request and reply are each written in at least four
// Writes (grpc-go's 32 KiB write buffer), which, were Latency a delay per
// Write, would take at least 400 ms.
func TestRPCUnderLatencyTakesOneRoundTrip(t *testing.T) {
	const (
		lat    = 50 * time.Millisecond
		margin = 250 * time.Millisecond // generous, and below the 300 ms per-Write delays add at least
		runs   = 20
	)
	f := testutil.Faults{Latency: lat}
	// Windows wide enough that flow control never waits a round trip.
	const window = 1 << 20
	e := testutil.StartEcho(t, testutil.WithServerFaults(f), testutil.WithClientFaults(f),
		testutil.WithServerOptions(grpc.InitialWindowSize(window), grpc.InitialConnWindowSize(window)),
		testutil.WithDialOptions(grpc.WithInitialWindowSize(window), grpc.WithInitialConnWindowSize(window)))
	ctx := rpcContext(t)
	payload := bytes.Repeat([]byte("x"), 120<<10)
	for range 3 { // connect, and let flow control open its windows
		if _, err := e.Client.Unary(ctx, payload); err != nil {
			t.Fatal(err)
		}
	}
	var took []time.Duration
	for range runs {
		start := time.Now()
		got, err := e.Client.Unary(ctx, payload)
		d := time.Since(start)
		if err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("Unary = %d bytes, %v", len(got), err)
		}
		atLeast(t, "a call under 50 ms each way", d, 2*lat)
		took = append(took, d)
	}
	// The median, not the slowest: a loaded machine may stall any one call,
	// while delays that add up per Write make every call slow.
	slices.Sort(took)
	if median := took[runs/2]; median >= 2*lat+margin {
		t.Errorf("the median of %d calls under %v each way took %v, want under %v", runs, lat, median, 2*lat+margin)
	}
	t.Logf("%d calls: median %v, slowest %v", runs, took[runs/2], took[runs-1])
}
