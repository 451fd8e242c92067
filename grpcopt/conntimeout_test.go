package grpcopt_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

const (
	connTimeout  = 1 * time.Second
	closeWithin  = 3 * time.Second  // a silent conn must be closed by then
	busyDuration = 10 * time.Second // a busy conn must survive this long
	silentConns  = 20               // of each kind in silentKinds
)

// silentKinds are what a conn that never completes the HTTP/2 preface
// phase sends before going quiet.
var silentKinds = []struct {
	name string
	send []byte
}{
	{"nothing", nil},
	{"half the client preface", []byte(http2.ClientPreface[:12])},
	{"the client preface but no SETTINGS frame", []byte(http2.ClientPreface)},
}

// TestConnectionTimeout checks grpc.ConnectionTimeout on servers whose conns
// live on a hub: raw TCP conns that stall before the HTTP/2 preface phase
// is over are closed by the server within closeWithin, not before the
// timeout, while a client on the same server keeps doing RPCs; and a conn
// that is busy for busyDuration, far past the timeout, is never cut (its
// stream survives and the client dials once). The busy conns of all server
// setups run at the same time, so the busy period is paid once.
func TestConnectionTimeout(t *testing.T) {
	var fixtures []*timeoutFixture
	for _, ss := range hubServers {
		fixtures = append(fixtures, newTimeoutFixture(t, ss))
	}
	for _, f := range fixtures {
		t.Run("on "+f.ss.name+" conns that stall before the preface phase ends are closed", f.checkSilentConns)
	}
	for _, f := range fixtures {
		t.Run("on "+f.ss.name+" a conn busy for "+busyDuration.String()+" is not cut", f.checkBusyConn)
	}
}

// timeoutFixture is a server with a connection timeout, a hub client
// connected to it, and that client's busy stream.
type timeoutFixture struct {
	ss    serverSetup
	addr  string
	c     *testutil.EchoClient
	ctx   context.Context
	dials atomic.Int64
	// busyDone is closed when the busy stream has ended, with busyErr set.
	busyDone chan struct{}
	busyErr  error
}

// newTimeoutFixture starts the server and the busy stream: one message
// round trip every 20 ms for busyDuration. The stream's first round trip
// completes before it returns.
func newTimeoutFixture(t *testing.T, ss serverSetup) *timeoutFixture {
	t.Helper()
	f := &timeoutFixture{ss: ss, busyDone: make(chan struct{})}
	serverHub, clientHub := hubtest.NewHubUnchecked(t), hubtest.NewHubUnchecked(t)
	_, f.addr = startEcho(t, ss, serverHub, grpc.ConnectionTimeout(connTimeout))
	f.c = testutil.NewEchoClient(dial(t, f.addr, nil, nil, countingDialer(clientHub, &f.dials)))
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	t.Cleanup(cancel)
	f.ctx = ctx
	st := openEchoStream(t, ctx, f.c)
	go func() {
		defer close(f.busyDone)
		f.busyErr = func() error {
			tick := time.NewTicker(20 * time.Millisecond)
			defer tick.Stop()
			end := time.Now().Add(busyDuration)
			for i := 0; time.Now().Before(end); i++ {
				<-tick.C
				msg := fmt.Appendf(nil, "busy %d", i)
				if err := st.Send(msg); err != nil {
					return fmt.Errorf("Send %d: %w", i, err)
				}
				if got, err := st.Recv(); err != nil || string(got) != string(msg) {
					return fmt.Errorf("Recv %d = %q, %v; want %q", i, got, err, msg)
				}
			}
			return st.CloseSend()
		}()
	}()
	t.Cleanup(func() {
		// A test that failed early still waits for the busy stream.
		select {
		case <-f.busyDone:
		case <-time.After(busyDuration + 30*time.Second):
		}
	})
	return f
}

// checkSilentConns opens silentConns raw TCP conns of each kind, which send
// nothing or a part of the preface phase and go quiet, and checks that the
// server closes each within closeWithin but not before the timeout, while
// unary RPCs on the client conn keep succeeding.
func (f *timeoutFixture) checkSilentConns(t *testing.T) {
	stopRPCs := make(chan struct{})
	var rpcs atomic.Int64
	rpcErr := make(chan error, 1)
	go func() {
		rpcErr <- func() error {
			for {
				select {
				case <-stopRPCs:
					return nil
				default:
				}
				if _, err := f.c.Unary(f.ctx, []byte("ping")); err != nil {
					return err
				}
				rpcs.Add(1)
			}
		}()
	}()

	var wg sync.WaitGroup
	var mu sync.Mutex
	var slowest time.Duration
	for i := range silentConns * len(silentKinds) {
		kind := silentKinds[i%len(silentKinds)]
		// The server's timeout starts when it accepts the conn: after the
		// dial began, and on a loaded machine possibly well before Dial
		// returns here. Timing from before the dial, the conn can never
		// seem to be closed early.
		start := time.Now()
		conn, err := net.Dial("tcp", f.addr)
		if err != nil {
			t.Fatalf("dialing silent conn %d: %v", i, err)
		}
		t.Cleanup(func() { conn.Close() })
		if len(kind.send) > 0 {
			if _, err := conn.Write(kind.send); err != nil {
				t.Fatalf("silent conn %d: writing %s: %v", i, kind.name, err)
			}
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn.SetReadDeadline(start.Add(closeWithin))
			err := drain(conn)
			took := time.Since(start)
			mu.Lock()
			slowest = max(slowest, took)
			mu.Unlock()
			switch {
			case isTimeout(err):
				t.Errorf("silent conn %d (sent %s) still open after %v", i, kind.name, closeWithin)
			case took < connTimeout-100*time.Millisecond:
				t.Errorf("silent conn %d (sent %s) closed after %v, before the %v connection timeout (%v)", i, kind.name, took, connTimeout, err)
			}
		}()
	}
	wg.Wait()
	close(stopRPCs)
	if err := <-rpcErr; err != nil {
		t.Errorf("a unary RPC failed while silent conns were open: %v", err)
	}
	if rpcs.Load() == 0 {
		t.Error("no unary RPC completed while silent conns were open")
	}
	t.Logf("silent conns closed after at most %v; %d unary RPCs meanwhile", slowest, rpcs.Load())
}

// checkBusyConn waits for the busy stream to end and checks that it never
// failed and that the client never had to dial again.
func (f *timeoutFixture) checkBusyConn(t *testing.T) {
	select {
	case <-f.busyDone:
		if f.busyErr != nil {
			t.Errorf("busy stream: %v", f.busyErr)
		}
	case <-time.After(busyDuration + 30*time.Second):
		t.Fatal("busy stream did not finish")
	}
	if n := f.dials.Load(); n != 1 {
		t.Errorf("client dialed %d times, want 1: the server cut its conn", n)
	}
}

// drain reads from c until an error, which it returns (nil for EOF): the
// server writes its SETTINGS frame before it reads the client's preface.
func drain(c net.Conn) error {
	buf := make([]byte, 512)
	for {
		if _, err := c.Read(buf); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return err
		}
	}
}
