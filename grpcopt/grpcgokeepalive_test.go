//go:build linux

package grpcopt_test

import (
	"context"
	"math"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
)

// TestKeepaliveSetTheGRPCGoWay pins the README's table: keepalive given to
// grpc-go directly (grpc.KeepaliveParams, grpc.WithKeepaliveParams), not
// through Config, sets TCP_USER_TIMEOUT only on package net's sockets,
// which grpc-go type-asserts as *net.TCPConn; a hub server conn (Listen)
// keeps grpc-go's default 20 s and a hub client conn (DialOption) none.
func TestKeepaliveSetTheGRPCGoWay(t *testing.T) {
	hubtest.Check(t)
	const infinite = time.Duration(math.MaxInt64)
	for _, tc := range []struct {
		name     string
		time     time.Duration // keepalive Time on both sides; Timeout is 10 s
		hub      bool          // grpcopt.Listen and DialOption, else package net
		srv, cli int           // TCP_USER_TIMEOUT, ms
	}{
		{"package net, Time = Timeout = 10s", 10 * time.Second, false, 10000, 10000},
		{"hub, Time = Timeout = 10s", 10 * time.Second, true, 20000, 0},
		{"package net, Time infinite", infinite, false, 0, 0},
		{"hub, Time infinite", infinite, true, 20000, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hubtest.NewHubUnchecked(t)
			var lis net.Listener
			var err error
			if tc.hub {
				lis, err = grpcopt.Listen(h, "tcp", "127.0.0.1:0")
			} else {
				lis, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			var accepted, dialed recorder
			lis = &wrapListener{Listener: lis, wrap: func(c net.Conn) (net.Conn, error) { return accepted.add(c), nil }}
			serveEcho(t, lis, grpc.KeepaliveParams(keepalive.ServerParameters{Time: tc.time, Timeout: 10 * time.Second}))

			dialer := func(ctx context.Context, addr string) (net.Conn, error) {
				var d net.Dialer // grpc-go's own dialer is one: it returns a *net.TCPConn
				return d.DialContext(ctx, "tcp", addr)
			}
			if tc.hub {
				dialer = grpcopt.Config{Hub: h}.Dial
			}
			cc, err := grpc.NewClient(lis.Addr().String(),
				grpc.WithTransportCredentials(insecure.NewCredentials()),
				grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: tc.time, Timeout: 10 * time.Second}),
				recordDials(dialer, &dialed))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			checkUserTimeouts(t, cc, &accepted, &dialed, tc.srv, tc.cli)
		})
	}
}
