//go:build linux

package grpcopt_test

import (
	"context"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/netutil"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// requireMPTCP skips the test unless the kernel serves MPTCP on loopback
// (hubtest.MPTCPPair). It reports whether an MPTCP socket refuses
// TCP_USER_TIMEOUT (Linux up to at least 6.18 does), that is, whether hub
// conns must count a refused option.
func requireMPTCP(t *testing.T) (refusesUserTimeout bool) {
	t.Helper()
	tc, _ := hubtest.MPTCPPair(t)
	rc, err := tc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var serr error
	rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, 20000)
	})
	t.Logf("TCP_USER_TIMEOUT on an MPTCP socket: %v", serr)
	return serr != nil
}

// mptcpClient returns an echo client dialing through dial, counting its
// dials and keeping the conns it made.
func mptcpClient(t *testing.T, addr string, dial func(context.Context, string) (net.Conn, error), opts ...grpc.DialOption) (*testutil.EchoClient, *atomic.Int64, *recorder) {
	t.Helper()
	dials := new(atomic.Int64)
	conns := new(recorder)
	all := append([]grpc.DialOption{
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		recordDials(func(ctx context.Context, a string) (net.Conn, error) {
			dials.Add(1)
			return dial(ctx, a)
		}, conns),
	}, opts...)
	cc, err := grpc.NewClient(addr, all...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testutil.NewEchoClient(cc), dials, conns
}

// echoOnceOn makes one fail-fast unary call on the client's first conn: a
// conn the server drops fails it (Unavailable) instead of being retried.
func echoOnceOn(t *testing.T, c *testutil.EchoClient, dials *atomic.Int64) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.Unary(ctx, []byte("mptcp"))
	if err != nil || string(out) != "mptcp" {
		t.Fatalf("echo over MPTCP: %q, %v", out, err)
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials for one call: the server dropped the MPTCP conn", n)
	}
}

// usesMPTCP fails the test unless c uses MPTCP.
func usesMPTCP(t *testing.T, c net.Conn) {
	t.Helper()
	using, err := c.(interface{ MultipathTCP() (bool, error) }).MultipathTCP()
	if !using || err != nil {
		t.Fatalf("%T's MultipathTCP() = %v, %v, want true", c, using, err)
	}
}

// TestMPTCPClientsAreServed: a client dialing with MPTCP (package net's
// dialer with SetMultipathTCP(true)) is served by every kind of hub server,
// as by grpc-go alone, although its socket refuses TCP_USER_TIMEOUT: the
// option is best-effort, as grpc-go's is, and its refusal is counted in
// SockoptStats.
func TestMPTCPClientsAreServed(t *testing.T) {
	refuses := requireMPTCP(t)
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	g := newGroup(t, 2)
	stdListen := func(t *testing.T) net.Listener {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		return lis
	}
	hubListen := func(cfg grpcopt.Config) func(*testing.T) net.Listener {
		return func(t *testing.T) net.Listener {
			lis, err := cfg.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			return lis
		}
	}
	hubCfg, groupCfg := grpcopt.Config{Hub: h}, grpcopt.Config{Group: g}
	for _, tc := range []struct {
		name   string
		listen func(*testing.T) net.Listener
		opts   []grpc.ServerOption
	}{
		{"by a Listen listener", hubListen(hubCfg), nil},
		{"by ServerOption over a standard listener", stdListen, []grpc.ServerOption{hubCfg.ServerOption(nil)}},
		{"by ServerOption over a Listen listener of another hub", hubListen(groupCfg), []grpc.ServerOption{hubCfg.ServerOption(nil)}},
		{"by ServerOption over netutil.LimitListener", func(t *testing.T) net.Listener { return netutil.LimitListener(stdListen(t), 10) },
			[]grpc.ServerOption{hubCfg.ServerOption(nil)}},
		{"by a Group's Listen listener", hubListen(groupCfg), nil},
		{"by a Group's ServerOption over a standard listener", stdListen, []grpc.ServerOption{groupCfg.ServerOption(nil)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			lis := tc.listen(t)
			serveEcho(t, lis, tc.opts...)
			before := grpcopt.ReadSockoptStats()
			var d net.Dialer
			d.SetMultipathTCP(true)
			c, dials, conns := mptcpClient(t, lis.Addr().String(), func(ctx context.Context, a string) (net.Conn, error) {
				return d.DialContext(ctx, "tcp", a)
			})
			echoOnceOn(t, c, dials)
			usesMPTCP(t, conns.only(t))
			after := grpcopt.ReadSockoptStats()
			if refuses && after.ServerUserTimeout == before.ServerUserTimeout {
				t.Errorf("SockoptStats %+v then %+v: the refused TCP_USER_TIMEOUT is not counted", before, after)
			}
		})
	}
}

// TestMPTCPDialOption: a hub client asked for MPTCP (Config.MultipathTCP)
// dials MPTCP and is served, by a standard server and by hub servers, with
// client keepalive on, whose TCP_USER_TIMEOUT its socket refuses: the
// option is best-effort, as grpc-go's is, and its refusal is counted.
func TestMPTCPDialOption(t *testing.T) {
	refuses := requireMPTCP(t)
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	g := newGroup(t, 2)
	kp := &keepalive.ClientParameters{Time: time.Minute, Timeout: 20 * time.Second}
	for _, tc := range []struct {
		name string
		s    serverSetup
		cfg  grpcopt.Config
	}{
		{"a hub client to a standard server", stdServer, grpcopt.Config{Hub: h, MultipathTCP: true, ClientKeepalive: kp}},
		{"a hub client to a Listen server", listenOptServer, grpcopt.Config{Hub: h, MultipathTCP: true, ClientKeepalive: kp}},
		{"a Group client to a standard server", stdServer, grpcopt.Config{Group: g, MultipathTCP: true, ClientKeepalive: kp}},
		{"a Group client to a ServerOption server", optionServer, grpcopt.Config{Group: g, MultipathTCP: true, ClientKeepalive: kp}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, addr := startEcho(t, tc.s, h)
			before := grpcopt.ReadSockoptStats()
			c, dials, conns := mptcpClient(t, addr, tc.cfg.Dial, grpc.WithKeepaliveParams(*kp))
			echoOnceOn(t, c, dials)
			hc := conns.only(t)
			if _, ok := hc.(*grpcopt.Conn); !ok {
				t.Fatalf("dialed a %T, want a hub conn", hc)
			}
			usesMPTCP(t, hc)
			after := grpcopt.ReadSockoptStats()
			if refuses && after.ClientUserTimeout == before.ClientUserTimeout {
				t.Errorf("SockoptStats %+v then %+v: the refused TCP_USER_TIMEOUT is not counted", before, after)
			}
			if !refuses {
				if got := userTimeout(t, hc); got != int(kp.Timeout/time.Millisecond) {
					t.Errorf("TCP_USER_TIMEOUT %d ms, want %v", got, kp.Timeout)
				}
			}
		})
	}
}
