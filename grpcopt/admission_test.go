package grpcopt_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/grpclog"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
	"github.com/hubio/hubio/transport"
)

// dialFromAddr returns a client conn to target whose TCP conns come from
// the local address from (127.0.0.2 and so on: distinct peers on
// loopback), dialed with package net; closed when the test ends.
func dialFromAddr(t *testing.T, target, from string) *grpc.ClientConn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}}
	cc, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			return d.DialContext(ctx, "tcp", addr)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// listenAndServe listens on 127.0.0.1 with cfg (its Admission applied) and
// serves the echo service there with cfg's ServerOption until the test
// ends.
func listenAndServe(t testing.TB, cfg grpcopt.Config) net.Listener {
	t.Helper()
	lis, err := cfg.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	serveEcho(t, lis, cfg.ServerOption(nil))
	return lis
}

// syncBuffer is a bytes.Buffer safe for the loggers' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func TestAdmissionPerPeerRefusesAGRPCClientFast(t *testing.T) {
	hubtest.Check(t)
	var warnings syncBuffer
	// grpclog's logger is global: this test does not run in parallel.
	grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, &warnings, &warnings))
	// Back to grpc-go's default: errors only, to stderr.
	t.Cleanup(func() { grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)) })

	h := hubtest.NewHub(t)
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConnsPerPeer: 1})
	if err != nil {
		t.Fatal(err)
	}
	cfg := grpcopt.Config{Hub: h, Admission: a, NoTelemetry: true}
	lis := listenAndServe(t, cfg)
	target := lis.Addr().String()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	first := testutil.NewEchoClient(dialFromAddr(t, target, "127.0.0.2"))
	if _, err := first.Unary(ctx, []byte("a")); err != nil {
		t.Fatalf("the peer's first client: %v", err)
	}
	// A second client of the same peer is refused: its RPC fails with
	// Unavailable as soon as the reset arrives, long before its deadline.
	for i := range 3 {
		start := time.Now()
		_, err := testutil.NewEchoClient(dialFromAddr(t, target, "127.0.0.2")).Unary(ctx, []byte("b"))
		if status.Code(err) != codes.Unavailable {
			t.Fatalf("the peer's second client: %v, want Unavailable", err)
		}
		t.Logf("refused client %d failed after %v: %v", i, time.Since(start), err)
	}
	if _, err := testutil.NewEchoClient(dialFromAddr(t, target, "127.0.0.3")).Unary(ctx, []byte("c")); err != nil {
		t.Fatalf("another peer's client: %v", err)
	}
	if _, err := first.Unary(ctx, []byte("a")); err != nil {
		t.Fatalf("the peer's first client after the refusals: %v", err)
	}
	s := a.Stats()
	if s.RefusedPeer < 3 || s.Open != 2 {
		t.Errorf("stats %+v, want at least 3 refused (peer), 2 open", s)
	}
	if n := strings.Count(warnings.String(), "MaxConnsPerPeer 1 reached"); n != 1 {
		t.Errorf("logged the peer refusal %d times, want once:\n%s", n, warnings.String())
	}
}

func TestAdmissionMovedConnKeepsItsSlot(t *testing.T) {
	// Listen on one hub, ServerOption with another: each conn is moved,
	// and its slot goes with it until grpc-go closes the moved conn.
	hubtest.Check(t)
	h1, h2 := hubtest.NewHub(t), hubtest.NewHub(t)
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConns: 1})
	if err != nil {
		t.Fatal(err)
	}
	lis, err := grpcopt.Config{Hub: h1, Admission: a, NoTelemetry: true}.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := serveEcho(t, lis, grpcopt.ServerOption(h2, nil))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cc := dial(t, lis.Addr().String(), nil, nil)
	if _, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("a")); err != nil {
		t.Fatal(err)
	}
	if s := a.Stats(); s.Open != 1 {
		t.Fatalf("%d open with one moved conn, want 1", s.Open)
	}
	_, err = testutil.NewEchoClient(dial(t, lis.Addr().String(), nil, nil)).Unary(ctx, []byte("b"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a second client over MaxConns 1: %v, want Unavailable", err)
	}
	cc.Close()
	if !hubtest.WaitFor(10*time.Second, func() bool { return a.Stats().Open == 0 }) {
		t.Fatalf("%d open after the client closed, want 0", a.Stats().Open)
	}
	srv.Stop()
}

func TestAdmissionGroupListenerSharesOneAdmission(t *testing.T) {
	hubtest.Check(t)
	g := newGroup(t, 2)
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConns: 2, MaxLoopDelay: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	cfg := grpcopt.Config{Group: g, Admission: a, NoTelemetry: true}
	lis := listenAndServe(t, cfg)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for i := range 2 {
		if _, err := testutil.NewEchoClient(dial(t, lis.Addr().String(), nil, nil)).Unary(ctx, []byte("a")); err != nil {
			t.Fatalf("client %d: %v", i, err)
		}
	}
	_, err = testutil.NewEchoClient(dial(t, lis.Addr().String(), nil, nil)).Unary(ctx, []byte("b"))
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("a third client over MaxConns 2: %v, want Unavailable", err)
	}
	if s := a.Stats(); s.Open != 2 || s.RefusedConns == 0 {
		t.Errorf("stats %+v, want 2 open and refusals", s)
	}
}

// A listener's warning hook leaves the Admission with the listener: an
// Admission that outlives listener after listener (a server restarted in
// a loop) warns for the open one only, and keeps no closed one's hook.
func TestAdmissionClosedListenerLeavesNoWarningHook(t *testing.T) {
	hubtest.Check(t)
	// grpclog's logger is global: this test does not run in parallel.
	t.Cleanup(func() { grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, io.Discard, os.Stderr)) })

	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			var warnings syncBuffer
			grpclog.SetLoggerV2(grpclog.NewLoggerV2(io.Discard, &warnings, &warnings))
			a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConns: 1})
			if err != nil {
				t.Fatal(err)
			}
			cfg := grpcopt.Config{Hub: hubtest.NewHub(t), Admission: a, NoTelemetry: true}
			if group {
				cfg = grpcopt.Config{Group: newGroup(t, 2), Admission: a, NoTelemetry: true}
			}
			var closed []string
			for range 3 {
				old, err := cfg.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				closed = append(closed, old.Addr().String())
				if err := old.Close(); err != nil {
					t.Fatal(err)
				}
			}
			lis := listenAndServe(t, cfg)
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if _, err := testutil.NewEchoClient(dial(t, lis.Addr().String(), nil, nil)).Unary(ctx, []byte("a")); err != nil {
				t.Fatalf("the first client: %v", err)
			}
			if _, err := testutil.NewEchoClient(dial(t, lis.Addr().String(), nil, nil)).Unary(ctx, []byte("b")); status.Code(err) != codes.Unavailable {
				t.Fatalf("the second client: %v, want Unavailable (MaxConns 1)", err)
			}
			logged := warnings.String()
			if n := strings.Count(logged, "listener "+lis.Addr().String()+" refused"); n != 1 {
				t.Errorf("the open listener's refusal logged %d times, want once:\n%s", n, logged)
			}
			for _, addr := range closed {
				if addr != lis.Addr().String() && strings.Contains(logged, addr) {
					t.Errorf("closed listener %s still warned:\n%s", addr, logged)
				}
			}
		})
	}
}
