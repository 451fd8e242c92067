//go:build linux

package grpcopt_test

import (
	"context"
	"math"
	"net"
	"sync"
	"syscall"
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
	"github.com/hubio/hubio/transport"
)

// userTimeout reads TCP_USER_TIMEOUT (ms) from c's socket with getsockopt.
func userTimeout(t *testing.T, c net.Conn) int {
	t.Helper()
	sc, ok := c.(syscall.Conn)
	if !ok {
		t.Fatalf("%T has no socket", c)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	var v int
	var gerr error
	if err := rc.Control(func(fd uintptr) { v, gerr = unix.GetsockoptInt(int(fd), unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT) }); err != nil {
		t.Fatal(err)
	}
	if gerr != nil {
		t.Fatalf("getsockopt TCP_USER_TIMEOUT: %v", gerr)
	}
	return v
}

// recorder keeps the conns a listener accepts or a dialer dials.
type recorder struct {
	mu    sync.Mutex
	conns []net.Conn
}

func (r *recorder) add(c net.Conn) net.Conn {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.conns = append(r.conns, c)
	return c
}

func (r *recorder) only(t *testing.T) net.Conn {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.conns) != 1 {
		t.Fatalf("%d conns recorded, want 1", len(r.conns))
	}
	return r.conns[0]
}

// recordDials is a context dialer that dials with dial and records each
// conn it returns in rec.
func recordDials(dial func(context.Context, string) (net.Conn, error), rec *recorder) grpc.DialOption {
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		c, err := dial(ctx, addr)
		if err != nil {
			return nil, err
		}
		return rec.add(c), nil
	})
}

// checkUserTimeouts makes one RPC on cc, then checks the TCP_USER_TIMEOUT
// (ms) of the one server conn and the one client conn recorded.
func checkUserTimeouts(t *testing.T, cc *grpc.ClientConn, accepted, dialed *recorder, server, client int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok")); err != nil {
		t.Fatal(err)
	}
	if got := userTimeout(t, accepted.only(t)); got != server {
		t.Errorf("server conn TCP_USER_TIMEOUT = %d ms, want %d", got, server)
	}
	if got := userTimeout(t, dialed.only(t)); got != client {
		t.Errorf("client conn TCP_USER_TIMEOUT = %d ms, want %d", got, client)
	}
}

// TestHubConnsGetGRPCUserTimeout: hub conns carry the TCP_USER_TIMEOUT
// grpc-go sets on a *net.TCPConn, server side by default (20 s) and from
// Config.ServerKeepalive, client side from Config.ClientKeepalive; the
// keepalive is given once, in Config.
func TestHubConnsGetGRPCUserTimeout(t *testing.T) {
	hubtest.Check(t)
	seven := 7 * time.Second
	for _, tc := range []struct {
		name       string
		cfg        grpcopt.Config
		hubListen  bool // grpcopt.Listen, else a standard listener
		limit      bool // behind netutil.LimitListener
		withOption bool // the server gets cfg.ServerOptions
		server     int  // want, ms
		client     int
	}{
		{name: "Listen alone gives grpc-go's default 20 s", hubListen: true, server: 20000},
		{name: "Listen with ServerOptions gives the default 20 s", hubListen: true, withOption: true, server: 20000},
		{name: "Listen with ServerOptions gives ServerKeepalive.Timeout", cfg: grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Timeout: seven}}, hubListen: true, withOption: true, server: 7000},
		{name: "Listen with an infinite server keepalive Time gives none", cfg: grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Time: time.Duration(math.MaxInt64)}}, hubListen: true, withOption: true, server: 0},
		{name: "ServerOptions over a standard listener gives ServerKeepalive.Timeout", cfg: grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Timeout: seven}}, withOption: true, server: 7000},
		{name: "ServerOption behind netutil.LimitListener gives the default 20 s", limit: true, withOption: true, server: 20000},
		{name: "DialOptions with ClientKeepalive gives its Timeout", cfg: grpcopt.Config{ClientKeepalive: &keepalive.ClientParameters{Timeout: seven}}, hubListen: true, server: 20000, client: 7000},
		{name: "DialOptions with ClientKeepalive without Timeout gives 20 s", cfg: grpcopt.Config{ClientKeepalive: &keepalive.ClientParameters{Time: time.Minute}}, hubListen: true, server: 20000, client: 20000},
		{name: "UserTimeout overrides both", cfg: grpcopt.Config{UserTimeout: 3 * time.Second, ClientKeepalive: &keepalive.ClientParameters{}}, hubListen: true, server: 3000, client: 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h := hubtest.NewHubUnchecked(t)
			cfg := tc.cfg
			cfg.Hub = h
			var lis net.Listener
			var err error
			if tc.hubListen {
				lis, err = cfg.Listen("tcp", "127.0.0.1:0")
			} else {
				lis, err = net.Listen("tcp", "127.0.0.1:0")
			}
			if err != nil {
				t.Fatal(err)
			}
			var accepted, dialed recorder
			// The recorder keeps the conn it is handed; the limiter's conn
			// wraps it, so the socket read is the same.
			lis = &wrapListener{Listener: lis, wrap: func(c net.Conn) (net.Conn, error) {
				if tcp, ok := c.(*net.TCPConn); ok {
					// ServerOption closes its raw conn once moved: keep a
					// duplicate of the socket to read.
					f, err := tcp.File()
					if err != nil {
						return nil, err
					}
					dup, err := net.FileConn(f)
					f.Close()
					if err != nil {
						return nil, err
					}
					t.Cleanup(func() { dup.Close() })
					accepted.add(dup)
					return c, nil
				}
				return accepted.add(c), nil
			}}
			if tc.limit {
				lis = netutil.LimitListener(lis, 10)
			}
			var sopts []grpc.ServerOption
			if tc.withOption {
				if sopts, err = cfg.ServerOptions(nil); err != nil {
					t.Fatal(err)
				}
			}
			serveEcho(t, lis, sopts...)

			dopts, err := cfg.DialOptions()
			if err != nil {
				t.Fatal(err)
			}
			dopts = append(dopts, grpc.WithTransportCredentials(insecure.NewCredentials()),
				recordDials(cfg.Dial, &dialed))
			cc, err := grpc.NewClient(lis.Addr().String(), dopts...)
			if err != nil {
				t.Fatal(err)
			}
			defer cc.Close()
			checkUserTimeouts(t, cc, &accepted, &dialed, tc.server, tc.client)
		})
	}
}

// TestHandshakeConnKeepsSyscallConn: the conn ServerOption's credentials
// return while they watch the connection timeout still has SyscallConn
// (channelz reads the socket's options through it), on the hub socket with
// grpc-go's default TCP_USER_TIMEOUT, and NetConn, through which
// transport.Beneath finds the hub conn.
func TestHandshakeConnKeepsSyscallConn(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	_, s := stdPair(t)
	conn, _, err := grpcopt.Config{Hub: h}.Credentials(nil).ServerHandshake(s)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if got := userTimeout(t, conn); got != 20000 {
		t.Fatalf("TCP_USER_TIMEOUT through the handshake conn's SyscallConn = %d ms, want 20000", got)
	}
	if hc, ok := transport.Beneath[*transport.Conn](conn); !ok || hc.Hub() != h {
		t.Fatalf("transport.Beneath(%T) found no conn on the hub", conn)
	}
}
