package testutil_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/nettest"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
	"github.com/hubio/hubio/transport"
)

// wait bounds every blocking step of these tests.
const wait = 10 * time.Second

// pair returns two connected conns made by mk's listen and dial halves:
// c1 dialed, c2 accepted. Both are closed at cleanup.
func pair(t testing.TB, listen func() (net.Listener, error), dial func(addr net.Addr) (net.Conn, error)) (c1, c2 net.Conn) {
	t.Helper()
	ln, err := listen()
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	c1, err = dial(ln.Addr())
	if err != nil {
		t.Fatal(err)
	}
	a := <-ch
	if a.err != nil {
		c1.Close()
		t.Fatal(a.err)
	}
	t.Cleanup(func() { c1.Close(); a.c.Close() })
	return c1, a.c
}

// hubPair returns two *transport.Conn on h over loopback TCP.
func hubPair(t testing.TB, h *poller.Hub) (c1, c2 net.Conn) {
	t.Helper()
	return pair(t,
		func() (net.Listener, error) { return transport.Listen(h, "tcp", "127.0.0.1:0") },
		func(a net.Addr) (net.Conn, error) {
			d := transport.Dialer{Hub: h, Timeout: wait}
			return d.Dial("tcp", a.String())
		})
}

// grpcoptPair returns two *grpcopt.Conn on h over loopback TCP.
func grpcoptPair(t testing.TB, h *poller.Hub) (c1, c2 net.Conn) {
	t.Helper()
	return pair(t,
		func() (net.Listener, error) { return grpcopt.Listen(h, "tcp", "127.0.0.1:0") },
		func(a net.Addr) (net.Conn, error) {
			ctx, cancel := context.WithTimeout(context.Background(), wait)
			defer cancel()
			return grpcopt.Config{Hub: h}.Dial(ctx, a.String())
		})
}

// stdPair returns two *net.TCPConn over loopback.
func stdPair(t testing.TB) (c1, c2 net.Conn) {
	t.Helper()
	return pair(t,
		func() (net.Listener, error) { return net.Listen("tcp", "127.0.0.1:0") },
		func(a net.Addr) (net.Conn, error) { return net.DialTimeout("tcp", a.String(), wait) })
}

// readFull reads exactly n bytes from c within the test's bound.
func readFull(t testing.TB, c net.Conn, n int) []byte {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(wait))
	defer c.SetReadDeadline(time.Time{})
	b := make([]byte, n)
	if _, err := io.ReadFull(c, b); err != nil {
		t.Fatalf("reading %d bytes: %v", n, err)
	}
	return b
}

func write(t testing.TB, c net.Conn, s string) {
	t.Helper()
	if n, err := c.Write([]byte(s)); n != len(s) || err != nil {
		t.Fatalf("Write(%q) = %d, %v", s, n, err)
	}
}

// atLeast fails t if got is below min.
func atLeast(t testing.TB, what string, got, min time.Duration) {
	t.Helper()
	if got < min {
		t.Errorf("%s took %v, want at least %v", what, got, min)
	}
}

func wantTimeout(t testing.TB, what string, err error) {
	t.Helper()
	var ne net.Error
	if !errors.Is(err, os.ErrDeadlineExceeded) || !errors.As(err, &ne) || !ne.Timeout() {
		t.Errorf("%s: err = %v, want a timeout matching os.ErrDeadlineExceeded", what, err)
	}
}

// TestFaultConnConformance runs the standard net.Conn conformance suite
// over FaultConns wrapping both ends, with faults set and without.
func TestFaultConnConformance(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, tc := range []struct {
		name   string
		faults testutil.Faults
	}{
		{"without faults", testutil.Faults{}},
		{"with latency", testutil.Faults{Latency: 200 * time.Microsecond}},
		{"with a bandwidth limit", testutil.Faults{Bandwidth: 64 << 20}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
				a, b := hubPair(t, h)
				c1 = testutil.NewFaultConn(h, a, tc.faults)
				c2 = testutil.NewFaultConn(h, b, tc.faults)
				return c1, c2, func() { c1.Close(); c2.Close() }, nil
			})
		})
	}
}

func TestLatencyDelaysEachWriteInOrder(t *testing.T) {
	h := hubtest.NewHub(t)
	a, b := hubPair(t, h)
	const lat = 60 * time.Millisecond
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: lat})
	for _, msg := range []string{"one", "two", "three"} {
		start := time.Now()
		write(t, fc, msg)
		if got := readFull(t, b, len(msg)); string(got) != msg {
			t.Fatalf("peer read %q, want %q", got, msg)
		}
		atLeast(t, "delivery", time.Since(start), lat)
	}
	if got := fc.Counts().Latency; got != 3 {
		t.Errorf("Counts().Latency = %d, want 3", got)
	}
}

// TestLatencyIsALinksOneWayDelay: as with tc netem, bytes arrive about the
// latency after they were sent, however the writes are cut: a burst of
// writes does not add up to N×Latency.
func TestLatencyIsALinksOneWayDelay(t *testing.T) {
	h := hubtest.NewHub(t)
	a, b := hubPair(t, h)
	const (
		lat    = 50 * time.Millisecond
		n      = 20
		size   = 8
		margin = 400 * time.Millisecond // generous; writes that add up take (i+1)×50 ms
	)
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: lat})
	sent := make([]time.Time, n)
	writeErr := make(chan error, 1)
	burst := time.Now()
	go func() {
		for i := range n {
			sent[i] = time.Now()
			if _, err := fc.Write(bytes.Repeat([]byte{byte(i)}, size)); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- nil
	}()
	b.SetReadDeadline(time.Now().Add(wait))
	buf := make([]byte, n*size)
	arrived := make([]time.Time, n)
	for got := 0; got < len(buf); {
		k, err := b.Read(buf[got:])
		if err != nil {
			t.Fatalf("peer Read after %d bytes: %v", got, err)
		}
		now := time.Now()
		for i := got / size; i < (got+k)/size; i++ {
			arrived[i] = now
		}
		got += k
	}
	if err := <-writeErr; err != nil {
		t.Fatal(err)
	}
	for i := range n {
		if !bytes.Equal(buf[i*size:(i+1)*size], bytes.Repeat([]byte{byte(i)}, size)) {
			t.Fatalf("write %d arrived changed or out of order: % x", i, buf[i*size:(i+1)*size])
		}
		if d := arrived[i].Sub(sent[i]); d < lat {
			t.Errorf("write %d of a burst arrived %v after it was sent, want at least %v", i, d, lat)
		}
		if d := arrived[i].Sub(burst); d > lat+margin {
			t.Errorf("write %d of a burst arrived %v after the burst began, want %v (up to %v more)", i, d, lat, margin)
		}
	}
}

// TestLatencyWriteReturnsBeforeDelivery: a Write under latency returns
// once its bytes are on the link, as a socket's does once the kernel has
// them; nothing arrives before the latency; Close does not wait for an
// hour's latency.
func TestLatencyWriteReturnsBeforeDelivery(t *testing.T) {
	h := hubtest.NewHub(t)
	a, b := hubPair(t, h)
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: time.Hour})
	fc.SetWriteDeadline(time.Now().Add(wait))
	start := time.Now()
	write(t, fc, "late")
	if d := time.Since(start); d > wait/2 {
		t.Errorf("a Write under an hour's latency took %v", d)
	}
	b.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
	if n, err := b.Read(make([]byte, 8)); n != 0 {
		t.Errorf("peer read %d bytes before the latency", n)
	} else {
		wantTimeout(t, "peer Read", err)
	}
	if err := fc.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if d := time.Since(start); d > wait {
		t.Errorf("Close with bytes an hour away took %v", d)
	}
}

func TestBandwidthPacesWrites(t *testing.T) {
	h := hubtest.NewHub(t)
	a, b := hubPair(t, h)
	const rate, size = 100 << 10, 25 << 10 // 25 KiB at 100 KiB/s: 250 ms
	want := bytes.Repeat([]byte("0123456789abcdef"), size/16)
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Bandwidth: rate})
	start := time.Now()
	done := make(chan error, 1)
	go func() {
		_, err := fc.Write(want)
		done <- err
	}()
	got := readFull(t, b, size)
	atLeast(t, "sending 25 KiB at 100 KiB/s", time.Since(start), 250*time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Error("paced data arrived changed")
	}
	// The link stays busy: a second Write waits for its own transmit time.
	start = time.Now()
	go func() {
		_, err := fc.Write(want[:10<<10])
		done <- err
	}()
	readFull(t, b, 10<<10)
	atLeast(t, "sending 10 KiB more", time.Since(start), 100*time.Millisecond)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if got := fc.Counts().Bandwidth; got != 2 {
		t.Errorf("Counts().Bandwidth = %d, want 2", got)
	}
}

func TestStall(t *testing.T) {
	h := hubtest.NewHub(t)
	const d = 100 * time.Millisecond

	t.Run("holds writes until it ends", func(t *testing.T) {
		a, b := hubPair(t, h)
		fc := testutil.NewFaultConn(h, a, testutil.Faults{})
		start := time.Now()
		fc.Stall(d)
		write(t, fc, "after")
		atLeast(t, "a stalled Write", time.Since(start), d)
		if got := readFull(t, b, 5); string(got) != "after" {
			t.Errorf("peer read %q", got)
		}
	})

	t.Run("holds reads, those already waiting included, with data intact", func(t *testing.T) {
		a, b := hubPair(t, h)
		fc := testutil.NewFaultConn(h, a, testutil.Faults{})
		got := make(chan []byte, 1)
		go func() {
			// Parked in the wrapped Read or in the stall: either way the
			// data comes after the stall.
			got <- readFull(t, fc, 6)
		}()
		start := time.Now()
		fc.Stall(d)
		write(t, b, "intact")
		if s := <-got; string(s) != "intact" {
			t.Errorf("stalled Read got %q", s)
		}
		atLeast(t, "a stalled Read", time.Since(start), d)
		if n := fc.Counts().Stall; n != 1 {
			t.Errorf("Counts().Stall = %d, want 1", n)
		}
	})

	t.Run("keeps deadlines", func(t *testing.T) {
		a, b := hubPair(t, h)
		fc := testutil.NewFaultConn(h, a, testutil.Faults{})
		fc.Stall(time.Hour)
		write(t, b, "held")
		fc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		start := time.Now()
		_, err := fc.Read(make([]byte, 4))
		wantTimeout(t, "stalled Read", err)
		atLeast(t, "a stalled Read that times out", time.Since(start), 50*time.Millisecond)
		if time.Since(start) > wait {
			t.Errorf("stalled Read took %v to time out", time.Since(start))
		}
		fc.SetWriteDeadline(time.Now().Add(10 * time.Millisecond))
		_, err = fc.Write([]byte("x"))
		wantTimeout(t, "stalled Write", err)
	})

	t.Run("a deadline moved while parked applies", func(t *testing.T) {
		a, _ := hubPair(t, h)
		fc := testutil.NewFaultConn(h, a, testutil.Faults{})
		fc.Stall(time.Hour)
		errc := make(chan error, 1)
		go func() {
			_, err := fc.Read(make([]byte, 1))
			errc <- err
		}()
		fc.SetReadDeadline(time.Now().Add(20 * time.Millisecond))
		select {
		case err := <-errc:
			wantTimeout(t, "Read", err)
		case <-time.After(wait):
			t.Fatal("Read did not see its new deadline")
		}
	})

	t.Run("Close releases parked calls", func(t *testing.T) {
		a, _ := hubPair(t, h)
		fc := testutil.NewFaultConn(h, a, testutil.Faults{})
		fc.Stall(time.Hour)
		errc := make(chan error, 2)
		go func() { _, err := fc.Read(make([]byte, 1)); errc <- err }()
		go func() { _, err := fc.Write([]byte("x")); errc <- err }()
		fc.Close()
		for range 2 {
			select {
			case err := <-errc:
				if !errors.Is(err, net.ErrClosed) {
					t.Errorf("err = %v, want net.ErrClosed", err)
				}
			case <-time.After(wait):
				t.Fatal("Close did not release a stalled call")
			}
		}
	})
}

func TestResetMakesThePeerSeeECONNRESET(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, tc := range []struct {
		name string
		pair func(t testing.TB) (net.Conn, net.Conn)
	}{
		{"on a *transport.Conn", func(t testing.TB) (net.Conn, net.Conn) { return hubPair(t, h) }},
		{"on a *grpcopt.Conn", func(t testing.TB) (net.Conn, net.Conn) { return grpcoptPair(t, h) }},
		{"on a *net.TCPConn", stdPair},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, b := tc.pair(t)
			fc := testutil.NewFaultConn(h, a, testutil.Faults{})
			errc := make(chan error, 1)
			go func() {
				b.SetReadDeadline(time.Now().Add(wait))
				_, err := b.Read(make([]byte, 1))
				errc <- err
			}()
			parked := make(chan error, 1)
			fc.Stall(time.Hour)
			go func() { _, err := fc.Read(make([]byte, 1)); parked <- err }()
			if err := fc.Reset(); err != nil {
				t.Fatalf("Reset: %v", err)
			}
			if err := <-errc; !errors.Is(err, syscall.ECONNRESET) {
				t.Errorf("peer Read: %v, want ECONNRESET", err)
			}
			if err := <-parked; !errors.Is(err, net.ErrClosed) {
				t.Errorf("Read parked in a stall: %v, want net.ErrClosed", err)
			}
			if err := fc.Reset(); !errors.Is(err, net.ErrClosed) {
				t.Errorf("second Reset: %v, want net.ErrClosed", err)
			}
			if n := fc.Counts().Reset; n != 1 {
				t.Errorf("Counts().Reset = %d, want 1", n)
			}
		})
	}
}

func TestResetOnAUnixSocketIsUnsupported(t *testing.T) {
	h := hubtest.NewHub(t)
	dir := t.TempDir()
	a, _ := pair(t,
		func() (net.Listener, error) { return transport.Listen(h, "unix", filepath.Join(dir, "s")) },
		func(a net.Addr) (net.Conn, error) { return (&transport.Dialer{Hub: h}).Dial("unix", a.String()) })
	fc := testutil.NewFaultConn(h, a, testutil.Faults{})
	if err := fc.Reset(); !errors.Is(err, errors.ErrUnsupported) {
		t.Errorf("Reset on unix: %v, want errors.ErrUnsupported", err)
	}
	write(t, fc, "still open")
}

func TestHalfOpen(t *testing.T) {
	h := hubtest.NewHub(t)
	a, b := hubPair(t, h)
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: time.Hour})
	fc.HalfOpen()

	// The faulted side's writes "succeed" at once, whatever the latency.
	write(t, fc, "into the void")

	// The peer hears nothing and times out at its deadline.
	const d = 80 * time.Millisecond
	b.SetReadDeadline(time.Now().Add(d))
	start := time.Now()
	n, err := b.Read(make([]byte, 32))
	if n != 0 {
		t.Errorf("peer read %d bytes from a half-open conn", n)
	}
	wantTimeout(t, "peer Read", err)
	atLeast(t, "peer Read", time.Since(start), d)

	// What the peer sends is lost too.
	write(t, b, "hello?")
	fc.SetReadDeadline(time.Now().Add(d))
	n, err = fc.Read(make([]byte, 32))
	if n != 0 {
		t.Errorf("half-open side read %d bytes", n)
	}
	wantTimeout(t, "half-open Read", err)

	// Until Close, which releases a parked Read.
	fc.SetReadDeadline(time.Time{})
	errc := make(chan error, 1)
	go func() { _, err := fc.Read(make([]byte, 1)); errc <- err }()
	fc.Close()
	select {
	case err := <-errc:
		if !errors.Is(err, net.ErrClosed) {
			t.Errorf("Read after Close: %v, want net.ErrClosed", err)
		}
	case <-time.After(wait):
		t.Fatal("Close did not release a half-open Read")
	}
	if c := fc.Counts(); c.HalfOpen != 1 || c.SwallowedBytes != uint64(len("into the void")) {
		t.Errorf("Counts() = %+v, want 1 half-open, %d bytes swallowed", c, len("into the void"))
	}
}

func TestCloseWriteComesAfterTheData(t *testing.T) {
	h := hubtest.NewHub(t)
	a, b := hubPair(t, h)
	fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: 20 * time.Millisecond})
	write(t, fc, "last words")
	if err := fc.CloseWrite(); err != nil {
		t.Fatal(err)
	}
	b.SetReadDeadline(time.Now().Add(wait))
	got, err := io.ReadAll(b)
	if err != nil || string(got) != "last words" {
		t.Errorf("peer ReadAll = %q, %v", got, err)
	}
}

func TestFaultListener(t *testing.T) {
	h := hubtest.NewHub(t)
	l, err := transport.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	fl := testutil.NewFaultListener(h, l, testutil.Faults{Latency: 10 * time.Millisecond})
	defer fl.Close()
	accepted := make(chan *testutil.FaultConn, 2)
	fl.OnAccept(func(c *testutil.FaultConn) { accepted <- c })
	d := transport.Dialer{Hub: h, Timeout: wait}
	var peers []net.Conn
	for range 2 {
		c, err := d.Dial("tcp", fl.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		peers = append(peers, c)
		sc, err := fl.Accept()
		if err != nil {
			t.Fatal(err)
		}
		if got, ok := testutil.FaultConnOf(sc); !ok || <-accepted != got {
			t.Fatal("OnAccept saw another conn than Accept returned")
		}
	}
	conns := fl.Conns()
	if len(conns) != 2 {
		t.Fatalf("Conns() has %d conns, want 2", len(conns))
	}
	for i, c := range conns {
		write(t, c, "hi")
		readFull(t, peers[i], 2)
	}
	conns[0].Stall(time.Millisecond)
	conns[0].Close()
	if got := fl.Conns(); len(got) != 1 || got[0] != conns[1] {
		t.Errorf("after Close, Conns() = %v, want the second conn only", got)
	}
	want := testutil.FaultCounts{Latency: 2, Stall: 1}
	if got := fl.Counts(); got != want {
		t.Errorf("Counts() = %+v, want %+v (closed conns included)", got, want)
	}
	fl.SetFaults(testutil.Faults{})
	start := time.Now()
	write(t, conns[1], "now")
	if time.Since(start) > wait {
		t.Error("SetFaults did not reach a live conn")
	}
	if got := fl.Counts().Latency; got != 2 {
		t.Errorf("after SetFaults(zero), Counts().Latency = %d, want still 2", got)
	}
}

// lingerFails is a TCP conn whose SetLinger fails with a bare errno.
type lingerFails struct{ net.Conn }

func (lingerFails) SetLinger(int) error { return syscall.EINVAL }

// TestResetErrorsAreOpErrors: every error Reset returns is a *net.OpError
// (Op "reset", Net and both addresses set) around the cause, as package
// net reports a socket's errors.
func TestResetErrorsAreOpErrors(t *testing.T) {
	h := hubtest.NewHub(t)
	dir := t.TempDir()
	unixConn, _ := pair(t,
		func() (net.Listener, error) { return transport.Listen(h, "unix", filepath.Join(dir, "s")) },
		func(a net.Addr) (net.Conn, error) { return (&transport.Dialer{Hub: h}).Dial("unix", a.String()) })
	a, _ := hubPair(t, h)
	b, _ := hubPair(t, h)
	closed := testutil.NewFaultConn(h, b, testutil.Faults{})
	closed.Close()
	for _, tc := range []struct {
		name string
		fc   *testutil.FaultConn
		want error
	}{
		{"when SO_LINGER cannot be set", testutil.NewFaultConn(h, lingerFails{a}, testutil.Faults{}), syscall.EINVAL},
		{"on a unix socket", testutil.NewFaultConn(h, unixConn, testutil.Faults{}), errors.ErrUnsupported},
		{"once closed", closed, net.ErrClosed},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.fc.Reset()
			var oe *net.OpError
			if !errors.As(err, &oe) || oe.Op != "reset" || oe.Net == "" || oe.Source == nil || oe.Addr == nil {
				t.Fatalf("Reset = %#v, want a *net.OpError with Op \"reset\", Net and addresses", err)
			}
			if !errors.Is(err, tc.want) {
				t.Errorf("Reset = %v, want it to match %v", err, tc.want)
			}
		})
	}
}

// TestResetWinsOverTheCloseItTriggers: a reader that closes the conn on
// its Read error (as grpc-go does) must not make Reset fail: Reset claims
// the close before it wakes anyone, and a later Close only reports
// net.ErrClosed.
func TestResetWinsOverTheCloseItTriggers(t *testing.T) {
	h := hubtest.NewHub(t)
	for i := range 20 {
		a, _ := hubPair(t, h)
		fc := testutil.NewFaultConn(h, a, testutil.Faults{Latency: 50 * time.Millisecond})
		write(t, fc, "on the link") // the deliverer is busy when Reset comes
		fc.Stall(time.Hour)
		closed := make(chan error, 1)
		go func() {
			fc.Read(make([]byte, 1))
			closed <- fc.Close()
		}()
		if err := fc.Reset(); err != nil {
			t.Fatalf("round %d: Reset = %v, want nil", i, err)
		}
		if err := <-closed; !errors.Is(err, net.ErrClosed) {
			t.Errorf("round %d: the reader's Close = %v, want net.ErrClosed", i, err)
		}
		if n := fc.Counts().Reset; n != 1 {
			t.Fatalf("round %d: Counts().Reset = %d, want 1", i, n)
		}
	}
}
