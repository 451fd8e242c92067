//go:build linux

package grpcopt_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// TestRequireHubRefusalIsLoggedOnceAtErrorLevel runs, in a child process
// with grpc-go's default logger (errors only), a RequireHub server whose
// listener wraps its conns in a rate limiter: two clients are refused, the
// first refusal is logged at error level with the conn's Go type and the
// remedy, and both are counted in ServerStats.Refused.
func TestRequireHubRefusalIsLoggedOnceAtErrorLevel(t *testing.T) {
	out := inChild(t, "HUBIO_REFUSAL_LOG_CHILD", requireHubChild,
		"GRPC_GO_LOG_SEVERITY_LEVEL=", "GRPC_GO_LOG_VERBOSITY_LEVEL=")
	if os.Getenv("HUBIO_REFUSAL_LOG_CHILD") == "1" {
		return
	}
	if n := strings.Count(out, "ERROR: [hubio] grpcopt: Config.RequireHub refused"); n != 1 {
		t.Fatalf("refusals logged at error level: %d, want 1 (two conns refused); output:\n%s", n, out)
	}
	for _, want := range []string{"*grpcopt_test.limitedWriter", "defines Write", "grpcopt.Bypassable", "grpcopt.Listen", "ServerStats.Refused"} {
		if !strings.Contains(out, want) {
			t.Errorf("the error lacks %q; output:\n%s", want, out)
		}
	}
}

func requireHubChild() error {
	h, err := poller.New()
	if err != nil {
		return err
	}
	defer h.Close()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	st := new(grpcopt.ServerCounters)
	srv := grpc.NewServer(grpcopt.Config{Hub: h, RequireHub: true, Stats: st}.ServerOption(nil))
	testutil.RegisterEchoServer(srv, nil)
	go srv.Serve(&wrapListener{Listener: lis, wrap: func(c net.Conn) (net.Conn, error) { return &limitedWriter{c}, nil }})
	defer srv.Stop()
	for range 2 {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err = testutil.NewEchoClient(cc).Unary(ctx, []byte("ok"))
		cancel()
		cc.Close()
		if err == nil {
			return errors.New("an RPC succeeded off the hub under RequireHub")
		}
	}
	// grpc-go may retry a refused conn before the RPC fails: at least two.
	if s := st.Read(); s.Refused < 2 || s.Refused != s.OffHub || s.Refused != s.Handshakes {
		return fmt.Errorf("server stats %+v: want every handshake (at least 2) refused and off the hub", s)
	}
	return nil
}

// TestConfigStatsCountOneServer: two servers with their own
// ServerCounters, one whose listener keeps its conns off the hub: each
// counts only its own conns, and ReadServerStats counts both.
func TestConfigStatsCountOneServer(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	var onSt, offSt grpcopt.ServerCounters
	before := grpcopt.ReadServerStats()

	onLis := stdListen(t)
	serveEcho(t, onLis, grpcopt.Config{Hub: h, Stats: &onSt}.ServerOption(nil))
	offLis := &wrapListener{Listener: stdListen(t), wrap: func(c net.Conn) (net.Conn, error) { return &limitedWriter{c}, nil }}
	serveEcho(t, offLis, grpcopt.Config{Hub: h, Stats: &offSt}.ServerOption(nil))
	for _, target := range []string{onLis.Addr().String(), offLis.Addr().String(), offLis.Addr().String()} {
		cc := dial(t, target, nil, nil)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok"))
		cancel()
		if err != nil {
			t.Fatalf("echo to %s: %v", target, err)
		}
	}
	if got, want := onSt.Read(), (grpcopt.ServerStats{Handshakes: 1}); got != want {
		t.Errorf("the on-hub server's stats: %+v, want %+v", got, want)
	}
	if got, want := offSt.Read(), (grpcopt.ServerStats{Handshakes: 2, OffHub: 2}); got != want {
		t.Errorf("the off-hub server's stats: %+v, want %+v", got, want)
	}
	after := grpcopt.ReadServerStats()
	if after.Handshakes-before.Handshakes != 3 || after.OffHub-before.OffHub != 2 {
		t.Errorf("process stats went from %+v to %+v, want 3 more handshakes and 2 more off the hub", before, after)
	}
}
