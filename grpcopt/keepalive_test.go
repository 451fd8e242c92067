package grpcopt_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	_ "unsafe" // for go:linkname

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// keepaliveMinPingTime is grpc-go's floor on keepalive.ClientParameters.Time
// (10 s), which grpc.WithKeepaliveParams applies when it is called. grpc-go's
// own tests lower it through its internal package; no exported API can, so
// these tests reach it by name to keep client pings fast.
//
//go:linkname keepaliveMinPingTime google.golang.org/grpc/internal.KeepaliveMinPingTime
var keepaliveMinPingTime time.Duration

// fastClientKeepalive returns grpc.WithKeepaliveParams(kp) without grpc-go
// raising kp.Time to its 10 s floor.
func fastClientKeepalive(kp keepalive.ClientParameters) grpc.DialOption {
	saved := keepaliveMinPingTime
	keepaliveMinPingTime = 0
	defer func() { keepaliveMinPingTime = saved }()
	return grpc.WithKeepaliveParams(kp)
}

// TestKeepaliveEnforcement checks that a server on a hub enforces its
// keepalive.EnforcementPolicy: a client that pings more often than MinTime
// is sent GOAWAY ENHANCE_YOUR_CALM "too_many_pings" and disconnected.
func TestKeepaliveEnforcement(t *testing.T) {
	policy := grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
		MinTime:             10 * time.Second,
		PermitWithoutStream: true,
	})
	for _, ss := range hubServers {
		t.Run("on "+ss.name+" a raw HTTP/2 client that pings too often reads GOAWAY too_many_pings", func(t *testing.T) {
			_, addr := startEcho(t, ss, hubtest.NewHubUnchecked(t), policy)
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { conn.Close() })
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			fr := http2.NewFramer(conn, conn)
			if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
				t.Fatal(err)
			}
			if err := fr.WriteSettings(); err != nil {
				t.Fatal(err)
			}
			// The first ping sets the clock; the next three are strikes,
			// one more than grpc-go's maxPingStrikes.
			for i := range 4 {
				if err := fr.WritePing(false, [8]byte{byte(i)}); err != nil {
					t.Fatalf("writing ping %d: %v", i, err)
				}
			}
			for {
				f, err := fr.ReadFrame()
				if err != nil {
					t.Fatalf("reading frames: %v before a GOAWAY", err)
				}
				switch f := f.(type) {
				case *http2.SettingsFrame:
					if !f.IsAck() {
						fr.WriteSettingsAck()
					}
					continue
				case *http2.GoAwayFrame:
					if f.ErrCode != http2.ErrCodeEnhanceYourCalm || string(f.DebugData()) != "too_many_pings" {
						t.Fatalf("GOAWAY %v %q, want ENHANCE_YOUR_CALM \"too_many_pings\"", f.ErrCode, f.DebugData())
					}
				default:
					continue
				}
				break
			}
			// (grpc-go then gives the client a second to close the conn
			// before closing it; the next test sees that happen.)
		})
	}
	for _, ss := range hubServers {
		t.Run("on "+ss.name+" a gRPC client that pings too often sees its stream fail as Unavailable", func(t *testing.T) {
			_, addr := startEcho(t, ss, hubtest.NewHubUnchecked(t), policy)
			cc := dial(t, addr, hubtest.NewHubUnchecked(t), nil, fastClientKeepalive(keepalive.ClientParameters{
				Time:                50 * time.Millisecond,
				Timeout:             5 * time.Second,
				PermitWithoutStream: true,
			}))
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t.Cleanup(cancel)
			st := openEchoStream(t, ctx, testutil.NewEchoClient(cc))
			_, err := st.Recv()
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "too_many_pings") {
				t.Fatalf("Recv = %v, want Unavailable after GOAWAY too_many_pings", err)
			}
		})
	}
}

// TestKeepalivePingsKeepIdleConnAlive checks that keepalive pings cross
// idle hub conns both ways in time: a client that pings every 50 ms and
// gives up after 1 s without an ack, and a server that pings after 1 s of
// silence and gives up after 1 s more, both keep their one conn through an
// idle period longer than that, with pings seen arriving on the pinged
// side's hub.
func TestKeepalivePingsKeepIdleConnAlive(t *testing.T) {
	tests := []struct {
		name       string
		serverOpts []grpc.ServerOption
		clientOpt  grpc.DialOption
		// The conn stays idle until the pinged side's hub has seen pings
		// events and minIdle has passed: longer than the pinging side
		// waits for an ack before it drops the conn.
		pinged  string
		pings   uint64
		minIdle time.Duration
	}{
		{
			name: "a server on a hub answers a client's pings every 50ms",
			serverOpts: []grpc.ServerOption{grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{
				MinTime:             time.Millisecond,
				PermitWithoutStream: true,
			})},
			clientOpt: fastClientKeepalive(keepalive.ClientParameters{
				Time:                50 * time.Millisecond,
				Timeout:             time.Second,
				PermitWithoutStream: true,
			}),
			pinged:  "server",
			pings:   30,
			minIdle: 1500 * time.Millisecond,
		},
		{
			name: "a hub client answers a server's pings every 1s",
			serverOpts: []grpc.ServerOption{grpc.KeepaliveParams(keepalive.ServerParameters{
				Time:    time.Second,
				Timeout: time.Second,
			})},
			pinged:  "client",
			pings:   3,
			minIdle: 2500 * time.Millisecond,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			serverHub, clientHub := hubtest.NewHubUnchecked(t), hubtest.NewHubUnchecked(t)
			_, addr := startEcho(t, listenOptServer, serverHub, tt.serverOpts...)
			var dials atomic.Int64
			opts := []grpc.DialOption{countingDialer(clientHub, &dials)}
			if tt.clientOpt != nil {
				opts = append(opts, tt.clientOpt)
			}
			cc := dial(t, addr, nil, nil, opts...)
			c := testutil.NewEchoClient(cc)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			t.Cleanup(cancel)
			if _, err := c.Unary(ctx, []byte("connect")); err != nil {
				t.Fatal(err)
			}
			pinged := serverHub
			if tt.pinged == "client" {
				pinged = clientHub
			}
			base, idleSince := pinged.Stats().Events, time.Now()
			if !hubtest.WaitFor(20*time.Second, func() bool {
				return pinged.Stats().Events >= base+tt.pings && time.Since(idleSince) >= tt.minIdle
			}) {
				t.Fatalf("the %s hub saw %d events in 20s of idleness, want %d: pings did not flow",
					tt.pinged, pinged.Stats().Events-base, tt.pings)
			}
			if s := cc.GetState(); s != connectivity.Ready {
				t.Errorf("client conn is %v after the idle period, want READY", s)
			}
			if _, err := c.Unary(ctx, []byte("still there")); err != nil {
				t.Fatalf("RPC after the idle period: %v", err)
			}
			if d := dials.Load(); d != 1 {
				t.Errorf("client dialed %d times, want 1: the idle conn was dropped", d)
			}
		})
	}
}

// TestMessageSizeLimits checks message size limits over hub conns: a
// request over the server's MaxRecvMsgSize and a reply over the client's
// receive limit fail with ResourceExhausted and leave the conn usable, and a
// 16 MiB message makes the round trip when both sides allow it.
func TestMessageSizeLimits(t *testing.T) {
	const mib = 1 << 20
	for _, ss := range hubServers {
		t.Run("on "+ss.name, func(t *testing.T) {
			t.Run("a request over the server's MaxRecvMsgSize fails with ResourceExhausted", func(t *testing.T) {
				_, addr := startEcho(t, ss, hubtest.NewHubUnchecked(t), grpc.MaxRecvMsgSize(mib))
				var dials atomic.Int64
				c := testutil.NewEchoClient(dial(t, addr, nil, nil, countingDialer(hubtest.NewHubUnchecked(t), &dials)))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t.Cleanup(cancel)
				_, err := c.Unary(ctx, make([]byte, mib+1024))
				if status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("oversized request: %v, want ResourceExhausted", err)
				}
				if _, err := c.Unary(ctx, []byte("small")); err != nil {
					t.Fatalf("small request after the oversized one: %v", err)
				}
				if d := dials.Load(); d != 1 {
					t.Errorf("client dialed %d times, want 1", d)
				}
			})
			t.Run("a reply over the client's MaxCallRecvMsgSize fails with ResourceExhausted", func(t *testing.T) {
				serverHub := hubtest.NewHubUnchecked(t)
				lis := ss.listen(t, serverHub, "tcp", "127.0.0.1:0")
				srv := grpc.NewServer(ss.serverOptions(serverHub, nil)...)
				testutil.RegisterEchoServer(srv, &testutil.EchoServer{
					OnUnary: func(_ context.Context, in []byte) ([]byte, error) {
						return make([]byte, 2*mib), nil
					},
				})
				serve(t, srv, lis)
				c := testutil.NewEchoClient(dial(t, lis.Addr().String(), hubtest.NewHubUnchecked(t), nil,
					grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(mib))))
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				t.Cleanup(cancel)
				if _, err := c.Unary(ctx, []byte("x")); status.Code(err) != codes.ResourceExhausted {
					t.Fatalf("oversized reply: %v, want ResourceExhausted", err)
				}
			})
			t.Run("a 16 MiB message makes the round trip", func(t *testing.T) {
				const size = 16 * mib
				_, addr := startEcho(t, ss, hubtest.NewHubUnchecked(t), grpc.MaxRecvMsgSize(size+mib), grpc.MaxSendMsgSize(size+mib))
				c := testutil.NewEchoClient(dial(t, addr, hubtest.NewHubUnchecked(t), nil, grpc.WithDefaultCallOptions(
					grpc.MaxCallRecvMsgSize(size+mib), grpc.MaxCallSendMsgSize(size+mib))))
				ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
				t.Cleanup(cancel)
				msg := make([]byte, size)
				rand.Read(msg)
				got, err := c.Unary(ctx, msg)
				if err != nil {
					t.Fatalf("16 MiB round trip: %v", err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("16 MiB round trip: got %d bytes that differ from the %d sent", len(got), len(msg))
				}
			})
		})
	}
}
