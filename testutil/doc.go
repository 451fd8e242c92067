// Package testutil helps users test code that runs on hubio: goroutine-leak
// checks that know the default hub and grpc-go, an in-process gRPC echo
// service on a hub, and a fault-injecting conn and listener driven by a
// hub's timers.
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
// Faults: Faults.Latency is a link's one-way delay (as tc netem gives it),
// Faults.Bandwidth paces what a conn sends; FaultConn.Stall, Reset and
// HalfOpen are triggered by the test. Conns from FaultListener and
// FaultDialer keep grpc-go's ReadOnReady read path, so grpc-go reads them
// as it reads hub conns in production.
//
// The examples show each pattern: NewEcho, StartEcho, WithServerFaults,
// FaultConn (and its Stall, Reset and HalfOpen), FaultListener,
// VerifyNoLeaks, VerifyTestMain, IgnoreDefaultHub, and RegisterEchoServer
// (confirming that a server's conns are on the hub).
package testutil
