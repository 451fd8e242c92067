package testutil_test

import (
	"errors"
	"net"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/mem"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// readyReader is grpc-go's readyreader.Reader: the non-pinning read path.
type readyReader interface {
	ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error)
}

// countingConn is a hub conn that counts how grpc-go reads it.
type countingConn struct {
	*grpcopt.Conn
	reads, readyReads *atomic.Int64
}

func (c *countingConn) Read(b []byte) (int, error) {
	c.reads.Add(1)
	return c.Conn.Read(b)
}

func (c *countingConn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	c.readyReads.Add(1)
	return c.Conn.ReadOnReady(bufSize, pool)
}

func (c *countingConn) NetConn() net.Conn { return c.Conn }

// countingListener hands out countingConns.
type countingListener struct {
	net.Listener
	reads, readyReads atomic.Int64
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &countingConn{Conn: c.(*grpcopt.Conn), reads: &l.reads, readyReads: &l.readyReads}, nil
}

// acceptOne dials l and returns the dialed conn and the one l accepted.
func acceptOne(t *testing.T, l net.Listener) (client, server net.Conn) {
	t.Helper()
	return pair(t, func() (net.Listener, error) { return l, nil },
		func(a net.Addr) (net.Conn, error) { return net.DialTimeout(a.Network(), a.String(), wait) })
}

func TestFaultConnsKeepReadOnReadyOnlyWhereTheWrappedConnHasIt(t *testing.T) {
	h := hubtest.NewHub(t)
	hubL, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	stdL, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		l     net.Listener
		ready bool
	}{
		{"over a grpcopt.Listen conn", hubL, true},
		{"over a package net conn", stdL, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, sc := acceptOne(t, testutil.NewFaultListener(h, tc.l, testutil.Faults{}))
			if _, ok := sc.(readyReader); ok != tc.ready {
				t.Errorf("accepted %T has ReadOnReady: %v, want %v", sc, ok, tc.ready)
			}
			if fc, ok := testutil.FaultConnOf(sc); !ok || fc == nil {
				t.Errorf("FaultConnOf(%T) = %v, %v", sc, fc, ok)
			}
		})
	}
	t.Run("a FaultDialer's conns", func(t *testing.T) {
		l, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		d := testutil.NewFaultDialer(h, testutil.Faults{})
		c, _ := pair(t, func() (net.Listener, error) { return l, nil },
			func(a net.Addr) (net.Conn, error) { return d.Dial(rpcContext(t), a.String()) })
		if _, ok := c.(readyReader); !ok {
			t.Errorf("dialed %T has no ReadOnReady", c)
		}
	})
}

func TestReadOnReadyAppliesTheFaults(t *testing.T) {
	h := hubtest.NewHub(t)
	open := func(t *testing.T) (peer net.Conn, fc *testutil.FaultConn, rr readyReader) {
		l, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		peer, sc := acceptOne(t, testutil.NewFaultListener(h, l, testutil.Faults{}))
		fc, _ = testutil.FaultConnOf(sc)
		return peer, fc, sc.(readyReader)
	}
	pool := mem.DefaultBufferPool()

	t.Run("a stall holds data back, intact", func(t *testing.T) {
		peer, fc, rr := open(t)
		const d = 100 * time.Millisecond
		start := time.Now()
		fc.Stall(d)
		write(t, peer, "intact")
		b, n, err := rr.ReadOnReady(64, pool)
		if err != nil || string((*b)[:n]) != "intact" {
			t.Fatalf("ReadOnReady = %d bytes, %v", n, err)
		}
		pool.Put(b)
		atLeast(t, "a stalled ReadOnReady", time.Since(start), d)
	})

	t.Run("half-open hears nothing until the deadline", func(t *testing.T) {
		peer, fc, rr := open(t)
		fc.HalfOpen()
		write(t, peer, "lost")
		fc.SetReadDeadline(time.Now().Add(80 * time.Millisecond))
		b, n, err := rr.ReadOnReady(64, pool)
		if b != nil || n != 0 {
			t.Errorf("half-open ReadOnReady read %d bytes", n)
		}
		wantTimeout(t, "half-open ReadOnReady", err)
	})

	t.Run("Reset releases a parked ReadOnReady", func(t *testing.T) {
		_, fc, rr := open(t)
		fc.Stall(time.Hour)
		errc := make(chan error, 1)
		go func() { _, _, err := rr.ReadOnReady(64, pool); errc <- err }()
		if err := fc.Reset(); err != nil {
			t.Fatal(err)
		}
		select {
		case err := <-errc:
			if !errors.Is(err, net.ErrClosed) {
				t.Errorf("ReadOnReady after Reset: %v, want net.ErrClosed", err)
			}
		case <-time.After(wait):
			t.Fatal("Reset did not release a parked ReadOnReady")
		}
	})
}

// TestGRPCReadsFaultConnsThroughReadOnReady: with faults on, grpc-go reads
// a server's conns through the hub conn's ReadOnReady (the non-pinning
// path production uses), never through Read and bufio.
func TestGRPCReadsFaultConnsThroughReadOnReady(t *testing.T) {
	h := hubtest.NewHub(t)
	l, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl := &countingListener{Listener: l}
	fl := testutil.NewFaultListener(h, cl, testutil.Faults{Latency: 5 * time.Millisecond, Bandwidth: 8 << 20})
	fl.OnAccept(func(c *testutil.FaultConn) { c.Stall(20 * time.Millisecond) })
	srv := grpc.NewServer(grpcopt.ServerOption(h, nil))
	testutil.RegisterEchoServer(srv, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(fl) }()
	defer func() { srv.Stop(); <-served }()

	d := testutil.NewFaultDialer(h, testutil.Faults{Latency: 5 * time.Millisecond})
	cc, err := grpc.NewClient(l.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), d.DialOption())
	if err != nil {
		t.Fatal(err)
	}
	defer cc.Close()
	ec := testutil.NewEchoClient(cc)
	unary := func() {
		t.Helper()
		if got, err := ec.Unary(rpcContext(t), []byte("through ReadOnReady")); err != nil || string(got) != "through ReadOnReady" {
			t.Fatalf("Unary = %q, %v", got, err)
		}
	}
	unary() // grpc-go reads the client preface with Read, then switches
	reads, readyReads := cl.reads.Load(), cl.readyReads.Load()
	for range 3 {
		unary()
	}
	if c := fl.Counts(); c.Latency == 0 || c.Stall == 0 || c.Bandwidth == 0 {
		t.Errorf("server faults %+v: want latency, bandwidth and a stall injected", c)
	}
	if n := cl.readyReads.Load() - readyReads; n == 0 {
		t.Error("grpc-go never called the hub conn's ReadOnReady for three RPCs")
	}
	if n := cl.reads.Load() - reads; n != 0 {
		t.Errorf("grpc-go read the hub conn through Read %d times for three RPCs, want only ReadOnReady", n)
	}
	if c := d.Counts(); c.Latency == 0 {
		t.Errorf("client faults %+v: want latency injected", c)
	}
}
