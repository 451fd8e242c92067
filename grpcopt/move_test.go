//go:build linux

package grpcopt_test

import (
	"context"
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// TestServerOptionServesConnsItCannotMove: ServerOption behind a listener
// that wraps its conns in a type of its own that changes the byte stream
// serves them where they are instead of failing every handshake; and conns
// from Listen on another hub are moved onto the option's hub.
func TestServerOptionServesConnsItCannotMove(t *testing.T) {
	h1, h2 := hubtest.NewHubUnchecked(t), hubtest.NewHubUnchecked(t)
	std, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	other, err := grpcopt.Listen(h1, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		lis    net.Listener
		onHub2 bool
	}{
		{"a stream wrapper's conns are served where they are", &wrapListener{Listener: std, wrap: func(c net.Conn) (net.Conn, error) { return &limitedWriter{c}, nil }}, false},
		{"conns from Listen on another hub move onto the option's hub", other, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := grpc.NewServer(grpcopt.ServerOption(h2, nil))
			testutil.RegisterEchoServer(srv, nil)
			go srv.Serve(tc.lis)
			defer srv.Stop()
			cc, err := grpc.NewClient(tc.lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if out, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok")); err != nil || string(out) != "ok" {
				t.Fatalf("echo: %q, %v", out, err)
			}
			if got := h2.Stats().Registered > 0; got != tc.onHub2 {
				t.Fatalf("conn on the option's hub: %v, want %v (stats %+v)", got, tc.onHub2, h2.Stats())
			}
		})
	}
}
