package grpcopt_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// newGroup returns a group of n hubs of the test's own, closed when the test
// ends (after the cleanups registered later, which stop servers and conns).
func newGroup(t testing.TB, n int, opts ...poller.GroupOption) *poller.Group {
	t.Helper()
	g, err := poller.NewGroup(n, opts...)
	if err != nil {
		t.Fatalf("poller.NewGroup: %v", err)
	}
	t.Cleanup(func() {
		if err := g.Close(); err != nil {
			t.Errorf("closing the group: %v", err)
		}
	})
	return g
}

// groupServer is a way of serving on a group: Listen with the group's
// Config, ServerOption with it over a standard listener, or both.
type groupServer struct {
	name           string
	listen, option bool
}

var groupServers = []groupServer{
	{"Listen", true, false},
	{"ServerOption over a standard listener", false, true},
	{"Listen with ServerOption", true, true},
}

// startGroupEcho serves the echo service on cfg as s says; it returns the
// address.
func startGroupEcho(t testing.TB, s groupServer, cfg grpcopt.Config) string {
	t.Helper()
	var lis net.Listener
	var err error
	if s.listen {
		lis, err = cfg.Listen("tcp", "127.0.0.1:0")
	} else {
		lis, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		t.Fatal(err)
	}
	var opts []grpc.ServerOption
	if s.option {
		opts = append(opts, cfg.ServerOption(nil))
	}
	serveEcho(t, lis, opts...)
	return lis.Addr().String()
}

// groupClient is a client conn dialed through cfg, counting its dials.
type groupClient struct {
	echo  *testutil.EchoClient
	dials atomic.Int64
}

func dialGroup(t testing.TB, addr string, cfg grpcopt.Config) *groupClient {
	t.Helper()
	c := &groupClient{}
	cc, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c.dials.Add(1)
			return cfg.Dial(ctx, a)
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	c.echo = testutil.NewEchoClient(cc)
	return c
}

// echo1 makes one unary call, waiting for the conn to be ready. A call
// that finds its conn cut by a closed hub (Unavailable: the client had not
// yet seen the cut) is made again, a few times at most.
func (c *groupClient) echo1(t testing.TB) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	msg := []byte("on a group")
	var out []byte
	var err error
	for range 3 {
		out, err = c.echo.Unary(ctx, msg, grpc.WaitForReady(true))
		if status.Code(err) != codes.Unavailable {
			break
		}
	}
	if err != nil || string(out) != string(msg) {
		t.Fatalf("echo: %q, %v", out, err)
	}
}

// registered returns each hub's Registered count.
func registered(g *poller.Group) []int64 {
	var n []int64
	for _, s := range g.Stats().Hubs {
		n = append(n, s.Registered)
	}
	return n
}

// spread reports whether per-hub fd counts hold conns (and a listening
// socket) at most one apart.
func spread(n []int64, conns int, listener bool) bool {
	want := int64(conns)
	if listener {
		want++
	}
	var sum int64
	for _, v := range n {
		sum += v
	}
	return sum == want && slices.Max(n)-slices.Min(n) <= 1
}

func TestGroupSpreadsAcceptedAndDialedConns(t *testing.T) {
	for _, b := range []poller.Balance{poller.LeastRegistered, poller.RoundRobin} {
		for _, s := range groupServers {
			t.Run(b.String()+"/"+s.name, func(t *testing.T) {
				hubtest.Check(t)
				sg := newGroup(t, 3, poller.WithBalance(b))
				cg := newGroup(t, 3, poller.WithBalance(b))
				addr := startGroupEcho(t, s, grpcopt.Config{Group: sg})
				const conns = 6
				for range conns {
					dialGroup(t, addr, grpcopt.Config{Group: cg}).echo1(t)
				}
				if got := registered(cg); fmt.Sprint(got) != "[2 2 2]" {
					t.Errorf("client conns per hub %v, want [2 2 2]", got)
				}
				// The server's hubs hold the 6 conns and, with Listen, the
				// listening socket: 7 fds, at most one apart.
				if !hubtest.WaitFor(5*time.Second, func() bool { return spread(registered(sg), conns, s.listen) }) {
					t.Errorf("server fds per hub %v, want %d conns spread at most one apart", registered(sg), conns)
				}
			})
		}
	}
}

func TestGroupKeepsServingWhenOneHubCloses(t *testing.T) {
	for _, s := range groupServers {
		t.Run(s.name, func(t *testing.T) {
			hubtest.Check(t)
			sg := newGroup(t, 3)
			cfg := grpcopt.Config{Group: sg}
			addr := startGroupEcho(t, s, cfg)
			ch := hubtest.NewHubUnchecked(t)
			var clients []*groupClient
			for range 6 {
				c := dialGroup(t, addr, grpcopt.Config{Hub: ch})
				c.echo1(t)
				clients = append(clients, c)
			}
			hubs := sg.Hubs()
			// Hub 1 holds server conns only (the listening socket is on
			// hub 0, the first pick): closing it breaks exactly those.
			broken := int(sg.Stats().Hubs[1].Registered)
			if broken == 0 {
				t.Fatalf("no server conn on hub 1: %v", registered(sg))
			}
			if err := hubs[1].Close(); err != nil {
				t.Fatal(err)
			}
			dials := func() (n int64) {
				for _, c := range clients {
					n += c.dials.Load()
				}
				return n
			}
			for _, c := range clients {
				c.echo1(t) // a conn of the closed hub redials onto a live one
			}
			if got, want := dials(), int64(len(clients)+broken); got != want {
				t.Errorf("%d dials after hub 1 closed, want %d: one redial per conn of the closed hub, none for the others", got, want)
			}
			if got := sg.Stats().Hubs[1].Registered; got != 0 {
				t.Errorf("closed hub still counts %d fds", got)
			}
			// Now the hub of the listening socket too (with Listen): new
			// conns are still accepted, on the one live hub.
			if err := hubs[0].Close(); err != nil {
				t.Fatal(err)
			}
			late := dialGroup(t, addr, grpcopt.Config{Hub: ch})
			late.echo1(t)
			for _, c := range clients {
				c.echo1(t)
			}
			if got := sg.Stats().Hubs[2].Registered; got < int64(len(clients))+1 {
				t.Errorf("the live hub holds %d fds, want all %d conns", got, len(clients)+1)
			}
		})
	}
}

func TestGroupListenerFailsOnceEveryHubHasClosed(t *testing.T) {
	hubtest.Check(t)
	g, err := poller.NewGroup(2)
	if err != nil {
		t.Fatal(err)
	}
	lis, err := grpcopt.Config{Group: g}.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	accepted := make(chan error, 1)
	go func() {
		c, err := lis.Accept()
		if err == nil {
			c.Close()
		}
		accepted <- err
	}()
	if err := g.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		checkAcceptClosed(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return within 10s of the group's Close")
	}
}

func TestGroupListenerCloseWakesAccept(t *testing.T) {
	hubtest.Check(t)
	g := newGroup(t, 2)
	lis, err := grpcopt.Config{Group: g}.Listen("unix", unixSocketPath(t))
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		_, err := lis.Accept()
		accepted <- err
	}()
	if err := lis.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-accepted:
		checkAcceptClosed(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Accept did not return within 10s of Close")
	}
}

// checkAcceptClosed fails the test unless err is an accept *net.OpError
// matching net.ErrClosed.
func checkAcceptClosed(t *testing.T, err error) {
	t.Helper()
	oe, ok := err.(*net.OpError)
	if !ok || oe.Op != "accept" || !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept: %v (%T), want an accept *net.OpError matching net.ErrClosed", err, err)
	}
}
