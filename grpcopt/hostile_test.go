package grpcopt_test

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// hostileServer starts an echo server with a 1 s connection timeout on its
// own hub (grpcopt.Listen and ServerOption), plus any services register
// adds, and a well-behaved hub client; it returns the address, the client
// and the hub.
func hostileServer(t *testing.T, register ...func(*grpc.Server)) (string, *testutil.EchoClient, *poller.Hub) {
	t.Helper()
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	lis, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer(grpcopt.ServerOption(h, nil), grpc.ConnectionTimeout(time.Second))
	testutil.RegisterEchoServer(srv, nil)
	for _, r := range register {
		r(srv)
	}
	go srv.Serve(lis)
	cc, err := grpc.NewClient(lis.Addr().String(),
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpcopt.DialOption(h))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cc.Close()
		srv.Stop()
		h.Close()
	})
	return lis.Addr().String(), testutil.NewEchoClient(cc), h
}

// mustEcho does one unary echo and fails the test if it does not succeed.
func mustEcho(t *testing.T, c *testutil.EchoClient) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := c.Unary(ctx, []byte("still serving"))
	if err != nil || string(out) != "still serving" {
		t.Fatalf("echo while under attack: %q, %v", out, err)
	}
}

// closedWithin reports whether the server closes c within d (a read
// returns EOF or an error other than our own deadline).
func closedWithin(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	buf := make([]byte, 4096)
	for {
		_, err := c.Read(buf)
		if err == nil {
			continue // the server's SETTINGS, GOAWAY, ...
		}
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			return false
		}
		return true
	}
}

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

func TestHostilePeersAreClosedWhileOthersAreServed(t *testing.T) {
	addr, client, _ := hostileServer(t) // connection timeout: 1 s

	t.Run("conns that never send the preface are closed at the connection timeout", func(t *testing.T) {
		var conns []net.Conn
		for range 10 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			conns = append(conns, c)
		}
		mustEcho(t, client)
		for i, c := range conns {
			if !closedWithin(c, 5*time.Second) {
				t.Fatalf("silent conn %d still open after 5 s", i)
			}
		}
		mustEcho(t, client)
	})

	t.Run("a conn that sends one byte at a time is closed at the connection timeout", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		stop := make(chan struct{})
		var wg sync.WaitGroup
		wg.Add(1)
		go func() {
			defer wg.Done()
			tick := time.NewTicker(200 * time.Millisecond)
			defer tick.Stop()
			for i := 0; i < len(clientPreface); i++ {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := c.Write([]byte{clientPreface[i]}); err != nil {
					return
				}
			}
		}()
		closed := closedWithin(c, 5*time.Second)
		close(stop)
		wg.Wait()
		if !closed {
			t.Fatal("slow conn still open after 5 s")
		}
		mustEcho(t, client)
	})

	t.Run("a peer sending garbage instead of HTTP/2 is closed", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff garbage garbage garbage"); err != nil {
			t.Fatal(err)
		}
		if !closedWithin(c, 5*time.Second) {
			t.Fatal("garbage conn still open after 5 s")
		}
		mustEcho(t, client)
	})
}

func TestPeerResettingMidStreamDoesNotDisturbOthers(t *testing.T) {
	addr, client, h := hostileServer(t)
	var victim atomic.Pointer[grpcopt.Conn]
	cfg := grpcopt.Config{Hub: h}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := cfg.Dial(ctx, a)
			if err == nil {
				victim.Store(c.(*grpcopt.Conn))
			}
			return c, err
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := testutil.NewEchoClient(cc).Stream(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send([]byte("first")); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Recv(); err != nil {
		t.Fatal(err)
	}
	// RST the stream's connection from under it.
	c := victim.Load()
	if err := c.SetLinger(0); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := s.Recv(); err == nil {
		t.Fatal("stream survived a reset of its connection")
	}
	mustEcho(t, client)
}

// floodSent counts the bytes the flood handler has sent.
var floodSent atomic.Int64

// floodDesc is a server-streaming service that sends 256 KiB messages until
// its stream fails: a server that writes as fast as it is let.
var floodDesc = grpc.ServiceDesc{
	ServiceName: "hubio.test.Flood",
	HandlerType: (*any)(nil),
	Streams: []grpc.StreamDesc{{
		StreamName:    "Flood",
		ServerStreams: true,
		Handler: func(_ any, stream grpc.ServerStream) error {
			if err := stream.RecvMsg(new(wrapperspb.BytesValue)); err != nil {
				return err
			}
			msg := wrapperspb.Bytes(make([]byte, 256<<10))
			for {
				if err := stream.SendMsg(msg); err != nil {
					return err
				}
				floodSent.Add(256 << 10)
			}
		},
	}},
}

// TestPeerThatStopsReadingCannotGrowServerMemory has a server stream
// messages as fast as it can to a client whose conn stops reading: flow
// control must stop the server's writes, and its memory, within bounds.
func TestPeerThatStopsReadingCannotGrowServerMemory(t *testing.T) {
	addr, client, h := hostileServer(t, func(s *grpc.Server) { s.RegisterService(&floodDesc, struct{}{}) })
	cfg := grpcopt.Config{Hub: h}
	cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := cfg.Dial(ctx, a)
			if err != nil {
				return nil, err
			}
			return &deafConn{Conn: c, deaf: make(chan struct{})}, nil
		}))
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s, err := cc.NewStream(ctx, &floodDesc.Streams[0], "/hubio.test.Flood/Flood")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.SendMsg(wrapperspb.Bytes(nil)); err != nil {
		t.Fatal(err)
	}
	s.CloseSend()
	if err := s.RecvMsg(new(wrapperspb.BytesValue)); err != nil {
		t.Fatal(err)
	}
	// The stream works; now the client's conn stops reading.
	deafen()
	t.Cleanup(func() {
		deafState.mu.Lock()
		deafState.on, deafState.conns = false, nil
		deafState.mu.Unlock()
	})
	var before runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)

	// Wait until the server's writes have been stuck for a while.
	last, since := int64(-1), time.Now()
	for deadline := time.Now().Add(30 * time.Second); ; {
		if n := floodSent.Load(); n != last {
			last, since = n, time.Now()
		} else if time.Since(since) > 500*time.Millisecond {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("server never stopped writing: %d MiB sent", floodSent.Load()>>20)
		}
		time.Sleep(20 * time.Millisecond) // sampling the counter, not synchronising
	}
	var after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&after)
	grown := int64(after.HeapInuse) - int64(before.HeapInuse)
	t.Logf("server writes stalled after %d MiB; heap in use grew by %d MiB", floodSent.Load()>>20, grown>>20)
	if floodSent.Load() > 256<<20 {
		t.Fatalf("server sent %d MiB to a peer that does not read", floodSent.Load()>>20)
	}
	if grown > 64<<20 {
		t.Fatalf("heap grew by %d MiB while the peer did not read", grown>>20)
	}
	mustEcho(t, client)
}

// deafState makes every deafConn stop reading once deafen is called.
var deafState struct {
	mu    sync.Mutex
	conns []*deafConn
	on    bool
}

func deafen() {
	deafState.mu.Lock()
	defer deafState.mu.Unlock()
	deafState.on = true
	for _, c := range deafState.conns {
		c.once.Do(func() { close(c.deaf) })
	}
}

// deafConn stops reading (its Read blocks until Close) once deafened, so
// the kernel's receive buffer fills and the peer's writes stall.
type deafConn struct {
	net.Conn
	deaf   chan struct{}
	once   sync.Once
	closed sync.Once
	gone   chan struct{}
	reg    sync.Once
}

func (c *deafConn) init() {
	c.reg.Do(func() {
		c.gone = make(chan struct{})
		deafState.mu.Lock()
		deafState.conns = append(deafState.conns, c)
		if deafState.on {
			c.once.Do(func() { close(c.deaf) })
		}
		deafState.mu.Unlock()
	})
}

func (c *deafConn) Read(b []byte) (int, error) {
	c.init()
	select {
	case <-c.deaf:
		<-c.gone
		return 0, net.ErrClosed
	default:
	}
	return c.Conn.Read(b)
}

func (c *deafConn) Close() error {
	c.init()
	c.closed.Do(func() { close(c.gone) })
	return c.Conn.Close()
}
