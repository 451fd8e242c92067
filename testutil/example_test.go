package testutil_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"os"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
	"github.com/hubio/hubio/transport"
)

// connPair returns two connected loopback TCP conns on h: the first dialed,
// the second accepted.
func connPair(h *poller.Hub) (net.Conn, net.Conn) {
	l, err := transport.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer l.Close()
	d := transport.Dialer{Hub: h, Timeout: 10 * time.Second}
	c1, err := d.Dial("tcp", l.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	c2, err := l.Accept()
	if err != nil {
		log.Fatal(err)
	}
	return c1, c2
}

func ExampleNewEcho() {
	e, err := testutil.NewEcho()
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close() // client, server, listener and the hub it created

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	reply, err := e.Client.Unary(ctx, []byte("hello"))
	if err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s\n", reply)
	// Output: hello
}

// In a test, StartEcho fails the test if the harness cannot start and
// closes everything at cleanup.
func ExampleStartEcho() {
	_ = func(t *testing.T) {
		e := testutil.StartEcho(t, testutil.WithUnixSocket())
		s, err := e.Client.Stream(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if err := s.Send([]byte("ping")); err != nil {
			t.Fatal(err)
		}
		if reply, err := s.Recv(); err != nil || string(reply) != "ping" {
			t.Fatalf("Recv = %q, %v", reply, err)
		}
	}
}

// Your own services, here grpc-go's generated health service, get the
// harness's hub, faults and cleanup: register them with WithServices and
// call them through e.ClientConn with their generated client. A reset
// server conn fails the RPCs in flight with codes.Unavailable (assert the
// code, not the message); the channel reconnects, and WaitForReady waits
// for it.
func ExampleWithServices() {
	hs := health.NewServer()
	e, err := testutil.NewEcho(
		testutil.WithServices(func(s grpc.ServiceRegistrar) { healthpb.RegisterHealthServer(s, hs) }),
		testutil.WithServerFaults(testutil.Faults{}),
	)
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	client := healthpb.NewHealthClient(e.ClientConn)
	resp, err := client.Check(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println("status:", resp.GetStatus())
	fmt.Println("conns on the hub:", e.Hub.Stats().Conns) // the client's and the server's

	hs.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	watch, err := client.Watch(ctx, &healthpb.HealthCheckRequest{})
	if err != nil {
		log.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		log.Fatal(err)
	}
	for _, c := range e.ServerFaults.Conns() {
		c.Reset()
	}
	_, err = watch.Recv()
	fmt.Println("watch after a reset:", status.Code(err))
	resp, err = client.Check(ctx, &healthpb.HealthCheckRequest{}, grpc.WaitForReady(true))
	fmt.Println("check after reconnecting:", resp.GetStatus(), err)
	// Output:
	// status: SERVING
	// conns on the hub: 2
	// watch after a reset: Unavailable
	// check after reconnecting: SERVING <nil>
}

// Faults on the server's conns: add latency to every reply, then reset the
// conn under a stream.
func ExampleWithServerFaults() {
	e, err := testutil.NewEcho(testutil.WithServerFaults(testutil.Faults{Latency: 20 * time.Millisecond}))
	if err != nil {
		log.Fatal(err)
	}
	defer e.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	start := time.Now()
	if _, err := e.Client.Unary(ctx, []byte("slow")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("delayed:", time.Since(start) >= 20*time.Millisecond)

	s, err := e.Client.Stream(ctx)
	if err != nil {
		log.Fatal(err)
	}
	if err := s.Send([]byte("x")); err != nil {
		log.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		log.Fatal(err)
	}
	for _, c := range e.ServerFaults.Conns() {
		c.Reset()
	}
	_, err = s.Recv()
	fmt.Println("stream failed:", err != nil)
	fmt.Println("resets:", e.ServerFaults.Counts().Reset)
	// Output:
	// delayed: true
	// stream failed: true
	// resets: 1
}

// Latency is the link's one-way delay: each Write's bytes reach the peer
// about the latency after they were sent, however the writes are cut.
func ExampleFaultConn() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	a, b := connPair(h)
	defer b.Close()
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: 30 * time.Millisecond})
	defer fc.Close()

	start := time.Now()
	go fc.Write([]byte("hi"))
	buf := make([]byte, 2)
	if _, err := io.ReadFull(b, buf); err != nil {
		log.Fatal(err)
	}
	fmt.Printf("%s after at least 30ms: %v\n", buf, time.Since(start) >= 30*time.Millisecond)
	// Output: hi after at least 30ms: true
}

func ExampleFaultConn_Stall() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	a, b := connPair(h)
	defer b.Close()
	fc := testutil.NewFaultConn(h, a, testutil.Faults{})
	defer fc.Close()

	start := time.Now()
	fc.Stall(50 * time.Millisecond)
	b.Write([]byte("later"))

	// A read deadline within the stall still applies ...
	fc.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
	buf := make([]byte, 5)
	_, err = fc.Read(buf)
	fmt.Println("timed out:", errors.Is(err, os.ErrDeadlineExceeded))

	// ... and once the stall is over, the data is there, intact.
	fc.SetReadDeadline(time.Time{})
	n, err := io.ReadFull(fc, buf)
	fmt.Printf("%s, %v, after the stall: %v\n", buf[:n], err, time.Since(start) >= 50*time.Millisecond)
	// Output:
	// timed out: true
	// later, <nil>, after the stall: true
}

func ExampleFaultConn_Reset() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	a, b := connPair(h)
	defer b.Close()
	fc := testutil.NewFaultConn(h, a, testutil.Faults{})

	if err := fc.Reset(); err != nil { // closes fc
		log.Fatal(err)
	}
	_, err = b.Read(make([]byte, 1))
	fmt.Println("peer sees ECONNRESET:", errors.Is(err, syscall.ECONNRESET))
	// Output: peer sees ECONNRESET: true
}

func ExampleFaultConn_HalfOpen() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	a, b := connPair(h)
	defer b.Close()
	fc := testutil.NewFaultConn(h, a, testutil.Faults{})
	defer fc.Close()

	fc.HalfOpen()
	n, err := fc.Write([]byte("lost"))
	fmt.Println("written:", n, err)

	b.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
	_, err = b.Read(make([]byte, 4))
	fmt.Println("peer timed out:", errors.Is(err, os.ErrDeadlineExceeded))
	fmt.Println("swallowed:", fc.Counts().SwallowedBytes)
	// Output:
	// written: 4 <nil>
	// peer timed out: true
	// swallowed: 4
}

// A FaultListener hands a server FaultConns; OnAccept sees each one first.
func ExampleFaultListener() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	l, err := transport.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	fl := testutil.NewFaultListener(h, l, testutil.Faults{Bandwidth: 1 << 20})
	defer fl.Close()
	fl.OnAccept(func(c *testutil.FaultConn) { fmt.Println("accepted a", fmt.Sprintf("%T", c.NetConn())) })

	d := transport.Dialer{Hub: h, Timeout: 10 * time.Second}
	c, err := d.Dial("tcp", fl.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	sc, err := fl.Accept()
	if err != nil {
		log.Fatal(err)
	}
	defer sc.Close()
	fmt.Println("live conns:", len(fl.Conns()))
	// Output:
	// accepted a *transport.Conn
	// live conns: 1
}

// Every package's tests should check for leaked goroutines once all its
// tests have run:
//
//	func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }
func ExampleVerifyTestMain() {
	_ = func(m *testing.M) { testutil.VerifyTestMain(m) }
}

// A single test checks that what it started has stopped: call
// VerifyNoLeaks first, without defer. It registers its check as a cleanup,
// which runs after every cleanup registered later (StartEcho's here), once
// the harness is closed.
func ExampleVerifyNoLeaks() {
	_ = func(t *testing.T) {
		testutil.VerifyNoLeaks(t)
		e := testutil.StartEcho(t)
		if _, err := e.Client.Unary(t.Context(), []byte("x")); err != nil {
			t.Fatal(err)
		}
	}
}

// A program that checks for leaks itself, with goleak, ignores the default
// hub's goroutine, which poller.Default starts and never ends.
func ExampleIgnoreDefaultHub() {
	_ = func() error {
		// ... serve and call through poller.Default(), then stop it all ...
		return goleak.Find(testutil.IgnoreDefaultHub())
	}
}

// To confirm that a server's conns are on the hub, give the server a hub
// of its own and read its Stats while a client is connected: Conns counts
// the conns the hub holds, one per connected client (Registered would count
// a grpcopt.Listen listener too). A server whose conns stay off the hub
// leaves it at 0, and grpcopt.ReadServerStats().OffHub counts them.
func ExampleRegisterEchoServer() {
	srvHub, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer srvHub.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0") // a standard listener, as most servers have
	if err != nil {
		log.Fatal(err)
	}
	srv := grpc.NewServer(grpcopt.ServerOption(srvHub, nil))
	testutil.RegisterEchoServer(srv, nil)
	go srv.Serve(lis)
	defer srv.Stop()

	cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		log.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("x")); err != nil {
		log.Fatal(err)
	}
	fmt.Println("server conns on the hub:", srvHub.Stats().Conns)
	// Output: server conns on the hub: 1
}
