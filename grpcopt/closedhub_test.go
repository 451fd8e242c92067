//go:build linux

package grpcopt_test

import (
	"bytes"
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// hubClosingListener closes the hub of the first conn its listener accepts
// before handing that conn on: the conn grpc-go then gets is a conn of a
// closed hub.
type hubClosingListener struct {
	net.Listener
	once   sync.Once
	closed chan *poller.Hub // the hub it closed
}

func (l *hubClosingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	l.once.Do(func() {
		h := c.(*grpcopt.Conn).Hub()
		h.Close()
		l.closed <- h
	})
	return c, nil
}

// serveOnClosingGroupHub serves the echo service with opts on a group of 3
// hubs (round robin) through a hubClosingListener: the first conn accepted
// is on a hub closed before grpc-go gets it.
func serveOnClosingGroupHub(t *testing.T, opts ...grpc.ServerOption) *hubClosingListener {
	t.Helper()
	g := newGroup(t, 3, poller.WithBalance(poller.RoundRobin))
	cfg := grpcopt.Config{Group: g}
	base, err := cfg.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	lis := &hubClosingListener{Listener: base, closed: make(chan *poller.Hub, 1)}
	serveEcho(t, lis, append([]grpc.ServerOption{cfg.ServerOption(nil)}, opts...)...)
	return lis
}

// heldConn is a client conn whose writes wait for release: grpc-go's
// client sends nothing, not even its preface, until then. read is closed
// when its first Read returns (the server's SETTINGS, or an error).
type heldConn struct {
	net.Conn
	release  <-chan struct{}
	read     chan struct{}
	readOnce sync.Once
}

func (c *heldConn) Write(b []byte) (int, error) {
	<-c.release
	return c.Conn.Write(b)
}

func (c *heldConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	c.readOnce.Do(func() { close(c.read) })
	return n, err
}

// watchersRunning reports whether a ConnectionTimeout guard's watcher
// goroutine exists, started or not.
func watchersRunning() bool {
	buf := make([]byte, 1<<20)
	n := runtime.Stack(buf, true)
	return bytes.Contains(buf[:n], []byte("grpcopt.(*guard).watchRaw"))
}

// TestConnOfAClosedGroupHubIsMovedAndServed: a conn accepted onto a hub of
// a group that closes before its handshake is moved onto a live hub of the
// group by the credentials and served there. The ConnectionTimeout guard,
// which can no longer wait on the raw conn through its closed hub, must
// not take that hub's closing for grpc-go closing the raw conn and close
// the conn it has just moved. The client holds its preface until the
// guard's watcher has run and left, so that the watcher sees the phase
// still running, as on a server slower than the client.
func TestConnOfAClosedGroupHubIsMovedAndServed(t *testing.T) {
	hubtest.Check(t)
	lis := serveOnClosingGroupHub(t, grpc.ConnectionTimeout(time.Minute))
	var dials atomic.Int64
	release := make(chan struct{})
	var releaseOnce sync.Once
	free := func() { releaseOnce.Do(func() { close(release) }) }
	conns := make(chan *heldConn, 1)
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			if dials.Add(1) > 1 {
				return nil, errors.New("a second dial: the first conn was closed")
			}
			var d net.Dialer
			c, err := d.DialContext(ctx, "tcp", a)
			if err != nil {
				return nil, err
			}
			hc := &heldConn{Conn: c, release: release, read: make(chan struct{})}
			conns <- hc
			return hc, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	t.Cleanup(free) // before cc.Close: a held Write would block it
	cc.Connect()
	hc := <-conns
	select {
	case <-hc.read: // the server's SETTINGS: ServerHandshake has returned
	case <-time.After(10 * time.Second):
		t.Fatal("the server sent nothing within 10s")
	}
	if !hubtest.WaitFor(10*time.Second, func() bool { return !watchersRunning() }) {
		t.Fatal("the guard's watcher still runs 10s after the handshake: it cannot wait through a closed hub")
	}
	free()
	if h := <-lis.closed; h.Err() == nil {
		t.Fatal("the accepted conn's hub is still running")
	}
	ec := testutil.NewEchoClient(cc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 3 {
		if out, err := ec.Unary(ctx, []byte("moved")); err != nil || string(out) != "moved" {
			t.Fatalf("echo on the conn moved from a closed hub: %q, %v", out, err)
		}
	}
	if n := dials.Load(); n != 1 {
		t.Fatalf("%d dials, want 1: the moved conn was closed", n)
	}
}

// TestConnOfAClosedGroupHubKeepsConnectionTimeout: grpc-go's
// ConnectionTimeout still holds for a conn accepted onto a hub of a group
// that closes before its handshake, and so moved onto a live hub: a client
// that never sends its preface is disconnected once the timeout passes, as
// on a live hub or over package net. (grpc-go sets the timeout on the raw
// conn, whose closed hub can no longer wait for it.)
func TestConnOfAClosedGroupHubKeepsConnectionTimeout(t *testing.T) {
	hubtest.Check(t)
	const timeout = 200 * time.Millisecond
	lis := serveOnClosingGroupHub(t, grpc.ConnectionTimeout(timeout))
	start := time.Now() // before the server can accept, and so set its deadline
	if _, err := readSilentConn(t, lis.Addr().String()); err != nil {
		t.Fatalf("the server kept a conn that sent no preface for 10s (ConnectionTimeout %v): %v", timeout, err)
	}
	if d := time.Since(start); d < timeout {
		t.Fatalf("the server closed the conn after %v, before its ConnectionTimeout of %v", d, timeout)
	}
	if h := <-lis.closed; h.Err() == nil {
		t.Fatal("the accepted conn's hub is still running")
	}
}
