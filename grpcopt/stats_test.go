//go:build linux

package grpcopt_test

import (
	"context"
	"testing"
	"time"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// TestHubConnsCountsClientsNotTheListener: the counter the docs point to
// for "are my server's conns on the hub": an idle server on a Listen
// listener shows Conns 0 (its listener is in Registered only), one
// connected client shows 1, and 0 again once the client has left.
func TestHubConnsCountsClientsNotTheListener(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	lis, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, lis, grpcopt.ServerOption(h, nil))
	if s := h.Stats(); s.Conns != 0 || s.Registered != 1 {
		t.Fatalf("idle server: Conns %d, Registered %d; want 0, 1", s.Conns, s.Registered)
	}
	cc := dial(t, lis.Addr().String(), nil, nil) // a package net client: only the server's conn is on h
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if s := h.Stats(); s.Conns != 1 || s.Registered != 2 {
		t.Fatalf("one client: Conns %d, Registered %d; want 1, 2", s.Conns, s.Registered)
	}
	cc.Close()
	if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Conns == 0 }) {
		t.Fatalf("after the client left: Conns %d, want 0", h.Stats().Conns)
	}
}
