//go:build linux

package grpcopt_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// slotConn is shaped as etcd's limitListenerConn (go.etcd.io/etcd/client/
// pkg/v3/transport, v3.7.3): it embeds net.Conn, releases a slot on Close
// and defines keepalive setters. It counts its closes.
type slotConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
	closes      *atomic.Int64
}

func (l *slotConn) Close() error {
	l.closes.Add(1)
	err := l.Conn.Close()
	l.releaseOnce.Do(l.release)
	return err
}
func (l *slotConn) SetKeepAlive(bool) error                { return nil }
func (l *slotConn) SetKeepAlivePeriod(time.Duration) error { return nil }

// tcpConnEmbed is a wrapper that embeds *net.TCPConn.
type tcpConnEmbed struct{ *net.TCPConn }

// declaredConn is a wrapper reflection would refuse (generic, with a Read
// of its own that only calls its conn's) that implements
// grpcopt.Bypassable.
type declaredConn[T any] struct {
	net.Conn
	tag T
}

func (c *declaredConn[T]) Read(b []byte) (int, error) { return c.Conn.Read(b) }
func (c *declaredConn[T]) BypassConn() net.Conn       { return c.Conn }

// wrapListener wraps each accepted conn with wrap.
type wrapListener struct {
	net.Listener
	wrap func(net.Conn) (net.Conn, error)
}

func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	w, err := l.wrap(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	return w, nil
}

// sniffConn is a muxer's conn, as cmux's: the listener has read bytes ahead
// to choose a protocol, and Read replays them first.
type sniffConn struct {
	net.Conn
	ahead []byte
}

func (c *sniffConn) Read(b []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(b, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// sniff reads the 24-byte HTTP/2 preface ahead, as cmux's matcher does.
func sniff(c net.Conn) (net.Conn, error) {
	b := make([]byte, 24)
	if _, err := io.ReadFull(c, b); err != nil {
		return nil, err
	}
	return &sniffConn{Conn: c, ahead: b}, nil
}

// limitedWriter is a rate limiter's conn: it defines Write.
type limitedWriter struct{ net.Conn }

func (c *limitedWriter) Write(b []byte) (int, error) { return c.Conn.Write(b) }

func stdListen(t *testing.T) net.Listener {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	return l
}

// stdPair returns a connected pair of package net TCP conns (client,
// server) on loopback, closed at cleanup.
func stdPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	lis := stdListen(t)
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return c, s
}

// echoOnce dials target with a standard client and runs one unary echo.
func echoOnce(t *testing.T, target string) *grpc.ClientConn {
	t.Helper()
	cc := dial(t, target, nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok")); err != nil || string(out) != "ok" {
		t.Fatalf("echo: %q, %v", out, err)
	}
	return cc
}

// TestServerOptionTakesSocketsFromBeneathCloseOnlyWrappers: conns of
// limiting listeners (x/net's, one shaped as etcd's, one embedding
// *net.TCPConn, one implementing Bypassable, and limiting listeners over
// Listen) are served on the option's hub, and no conn is counted off the
// hub.
func TestServerOptionTakesSocketsFromBeneathCloseOnlyWrappers(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	closes := new(atomic.Int64)
	slots := func(l net.Listener) net.Listener {
		return &wrapListener{Listener: l, wrap: func(c net.Conn) (net.Conn, error) {
			return &slotConn{Conn: c, release: func() {}, closes: closes}, nil
		}}
	}
	listenOnHub := func(t *testing.T) net.Listener {
		l, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { l.Close() })
		return l
	}
	for _, tc := range []struct {
		name string
		lis  func(t *testing.T) net.Listener
	}{
		{"netutil.LimitListener's conns", func(t *testing.T) net.Listener { return netutil.LimitListener(stdListen(t), 4) }},
		{"etcd-style limit conns", func(t *testing.T) net.Listener { return slots(stdListen(t)) }},
		{"a struct embedding *net.TCPConn", func(t *testing.T) net.Listener {
			return &wrapListener{Listener: stdListen(t), wrap: func(c net.Conn) (net.Conn, error) { return &tcpConnEmbed{c.(*net.TCPConn)}, nil }}
		}},
		{"a wrapper implementing grpcopt.Bypassable", func(t *testing.T) net.Listener {
			return &wrapListener{Listener: stdListen(t), wrap: func(c net.Conn) (net.Conn, error) { return &declaredConn[string]{Conn: c}, nil }}
		}},
		{"a wrapper implementing grpcopt.Bypassable over Listen on the same hub", func(t *testing.T) net.Listener {
			return &wrapListener{Listener: listenOnHub(t), wrap: func(c net.Conn) (net.Conn, error) { return &declaredConn[string]{Conn: c}, nil }}
		}},
		{"netutil.LimitListener over Listen on the same hub", func(t *testing.T) net.Listener { return netutil.LimitListener(listenOnHub(t), 4) }},
		{"etcd-style limit conns over Listen on the same hub", func(t *testing.T) net.Listener { return slots(listenOnHub(t)) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := grpcopt.ReadServerStats()
			closes.Store(0)
			lis := tc.lis(t)
			listening := h.Stats().Registered // a Listen listener is on the hub
			serveEcho(t, lis, grpcopt.ServerOption(h, nil))
			cc := echoOnce(t, lis.Addr().String())
			if got := h.Stats().Registered; got != listening+1 {
				t.Fatalf("hub registrations during the call: %d, want the server conn", got)
			}
			after := grpcopt.ReadServerStats()
			if after.OffHub != before.OffHub || after.Unwrapped == before.Unwrapped {
				t.Fatalf("server stats %+v then %+v: want an unwrapped conn and none off the hub", before, after)
			}
			cc.Close()
			if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Registered == listening }) {
				t.Fatalf("hub registrations after the client left: %d, want %d", h.Stats().Registered, listening)
			}
			if strings.Contains(tc.name, "etcd") && !hubtest.WaitFor(10*time.Second, func() bool { return closes.Load() == 1 }) {
				t.Fatalf("wrapper closed %d times, want once", closes.Load())
			}
		})
	}
	if n := closes.Load(); n > 1 {
		t.Fatalf("wrapper closed %d times, want once", n)
	}
}

// TestLimitListenerSlotIsFreedByTheHubConn: over netutil.LimitListener
// with one slot, a second client is served once the first has gone, so
// closing the hub conn released the wrapper's slot.
func TestLimitListenerSlotIsFreedByTheHubConn(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	lis := netutil.LimitListener(stdListen(t), 1)
	serveEcho(t, lis, grpcopt.ServerOption(h, nil))
	first := echoOnce(t, lis.Addr().String())

	second := dial(t, lis.Addr().String(), nil, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err := testutil.NewEchoClient(second).Unary(ctx, []byte("early"), grpc.WaitForReady(true))
	cancel()
	if status.Code(err) != codes.DeadlineExceeded {
		t.Fatalf("second client while the slot is held: %v, want DeadlineExceeded", err)
	}
	first.Close()
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := testutil.NewEchoClient(second).Unary(ctx, []byte("ok"), grpc.WaitForReady(true)); err != nil || string(out) != "ok" {
		t.Fatalf("second client after the first left: %q, %v (slot not released)", out, err)
	}
	if got := h.Stats().Registered; got != 1 {
		t.Fatalf("hub registrations: %d, want the second client's conn", got)
	}
}

// TestUnwrappedConnHoldsOneFd: once its preface is in, a conn taken from
// beneath a limiting wrapper holds one fd, the hub conn's: the wrapper's
// socket is closed, and the wrapper's Close later only releases its slot.
func TestUnwrappedConnHoldsOneFd(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	lis := netutil.LimitListener(stdListen(t), 100)
	serveEcho(t, lis, grpcopt.ServerOption(h, nil))
	const n = 4
	for range n {
		echoOnce(t, lis.Addr().String()) // a client conn that has made an RPC
	}
	// Each conn: the client's socket and the server's hub conn. Only the
	// fds of these conns are counted (those of the listener's port), so
	// that other tests' conns closing late cannot move the count.
	if got := portFDs(t, lis.Addr().(*net.TCPAddr).Port); got != 2*n {
		t.Fatalf("%d conns hold %d fds, want %d (a second fd per server conn?)", n, got, 2*n)
	}
	if got := h.Stats().Registered; got != n {
		t.Fatalf("hub registrations: %d, want %d", got, n)
	}
}

// TestServerOptionKeepsStreamWrappers: a muxer's conn that has read bytes
// ahead, a rate limiter's conn and TLS stay in the path: the bytes they hold
// reach grpc-go, the conns are served off the hub and counted, and with
// RequireHub they are refused with ErrOffHub.
func TestServerOptionKeepsStreamWrappers(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	for _, tc := range []struct {
		name string
		wrap func(net.Conn) (net.Conn, error)
	}{
		{"a muxer's conn holding bytes read ahead", sniff},
		{"a rate limiter's conn", func(c net.Conn) (net.Conn, error) { return &limitedWriter{c}, nil }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, require := range []bool{false, true} {
				before := grpcopt.ReadServerStats()
				lis := &wrapListener{Listener: stdListen(t), wrap: tc.wrap}
				serveEcho(t, lis, grpcopt.Config{Hub: h, RequireHub: require}.ServerOption(nil))
				cc := dial(t, lis.Addr().String(), nil, nil)
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				out, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok"))
				cancel()
				if require {
					if err == nil {
						t.Fatalf("RequireHub: echo succeeded off the hub")
					}
				} else if err != nil || string(out) != "ok" {
					t.Fatalf("echo: %q, %v", out, err)
				}
				if got := h.Stats().Registered; got != 0 {
					t.Fatalf("hub registrations: %d, want none (the wrapper must stay in the path)", got)
				}
				if after := grpcopt.ReadServerStats(); after.OffHub == before.OffHub {
					t.Fatalf("server stats %+v then %+v: the conn is not counted off the hub", before, after)
				}
				cc.Close()
			}
		})
	}
}

// TestRequireHubError: the handshake error of a refused conn names its type
// and matches ErrOffHub.
func TestRequireHubError(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	_, s := stdPair(t)
	creds := grpcopt.Config{Hub: h, RequireHub: true}.Credentials(nil)
	_, _, err := creds.ServerHandshake(&limitedWriter{s})
	if !errors.Is(err, grpcopt.ErrOffHub) || !strings.Contains(err.Error(), "limitedWriter") {
		t.Fatalf("ServerHandshake: %v, want ErrOffHub naming the conn's type", err)
	}
}

// TestOffHubConnsAreLoggedOncePerServer runs in a child process with
// grpc-go's log at warning level: two off-hub conns give one warning that
// names the conn's type and the remedy.
func TestOffHubConnsAreLoggedOncePerServer(t *testing.T) {
	out := inChild(t, "HUBIO_OFFHUB_LOG_CHILD", func() error {
		h, err := poller.New()
		if err != nil {
			return err
		}
		defer h.Close()
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return err
		}
		srv := grpc.NewServer(grpcopt.ServerOption(h, nil))
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
			if err != nil {
				return err
			}
		}
		return nil
	}, "GRPC_GO_LOG_SEVERITY_LEVEL=warning", "GRPC_GO_LOG_VERBOSITY_LEVEL=0")
	if os.Getenv("HUBIO_OFFHUB_LOG_CHILD") == "1" {
		return
	}
	if n := strings.Count(out, "stay off the hub"); n != 1 {
		t.Fatalf("off-hub warnings: %d, want 1; output:\n%s", n, out)
	}
	for _, want := range []string{"WARNING", "*grpcopt_test.limitedWriter", "defines Write", "RequireHub",
		"served through the conn grpc-go was given"} {
		if !strings.Contains(out, want) {
			t.Fatalf("the warning lacks %q; output:\n%s", want, out)
		}
	}
	if strings.Contains(out, "package net") {
		t.Fatalf("the warning says the conn is served by package net, which it need not be; output:\n%s", out)
	}
}
