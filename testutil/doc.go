// Package testutil helps users test code that runs on hubio: goroutine-leak
// checks that know the default hub and grpc-go, an in-process gRPC server
// on a hub (serving an echo service and, with WithServices, your own), and
// a fault-injecting conn and listener driven by a hub's timers.
//
// A unit test of gRPC code on a hub, leak-checked:
//
//	func TestMine(t *testing.T) {
//		testutil.VerifyNoLeaks(t) // first: its check runs after the cleanups below
//		e := testutil.StartEcho(t, testutil.WithServerFaults(testutil.Faults{Latency: 20 * time.Millisecond}))
//		reply, err := e.Client.Unary(t.Context(), []byte("hi"))
//		// ... then e.ServerFaults.Conns()[0].Reset(), Stall, HalfOpen ...
//	}
//
// Your own generated services run in the same harness, with the same
// faults and cleanup:
//
//	e := testutil.StartEcho(t,
//		testutil.WithServices(func(s grpc.ServiceRegistrar) { pb.RegisterGreeterServer(s, &greeter{}) }),
//		testutil.WithServerFaults(testutil.Faults{}))
//	reply, err := pb.NewGreeterClient(e.ClientConn).SayHello(t.Context(), &pb.HelloRequest{Name: "x"})
//
// Faults: Faults.Latency is a link's one-way delay (as tc netem gives it),
// Faults.Bandwidth paces what a conn sends; FaultConn.Stall, Reset and
// HalfOpen are triggered by the test. Conns from FaultListener and
// FaultDialer keep grpc-go's ReadOnReady read path, so grpc-go reads them
// as it reads hub conns in production.
//
// Through gRPC, a fault shows as a status: a reset conn fails the RPCs in
// flight with codes.Unavailable (see FaultConn.Reset for what to assert).
//
// The examples show each pattern: NewEcho, StartEcho, WithServices (on
// grpc-go's generated health service), WithServerFaults,
// FaultConn (and its Stall, Reset and HalfOpen), FaultListener,
// VerifyNoLeaks, VerifyTestMain, IgnoreDefaultHub, and RegisterEchoServer
// (confirming that a server's conns are on the hub: the hub's
// Stats().Conns counts one per connected client).
package testutil
