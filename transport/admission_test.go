package transport_test

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// admit returns a TCP hub listener on h at addr applying p.
func admitListener(t *testing.T, h *poller.Hub, addr string, p transport.AdmissionPolicy) (*transport.Listener, *transport.Admission) {
	t.Helper()
	a, err := transport.NewAdmission(p)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := transport.ListenHub(h, "tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s: %v", addr, err)
	}
	ln.SetAdmission(a)
	t.Cleanup(func() { ln.Close() })
	return ln, a
}

// acceptAll accepts on ln until it closes, handing each conn over the
// returned channel; conns left in it are closed at cleanup.
func acceptAll(t *testing.T, ln *transport.Listener) <-chan net.Conn {
	t.Helper()
	ch := make(chan net.Conn, 1024)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ch <- c
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		close(ch)
		for c := range ch {
			c.Close()
		}
	})
	return ch
}

// dialFrom connects to ln from the local address from ("" for any), with
// package net; the conn is closed at cleanup. A refusal can reset the conn
// before the dialer has seen it connected: dialFrom then returns nil, which
// wantReset takes for a refusal.
func dialFrom(t *testing.T, ln net.Listener, from string) net.Conn {
	t.Helper()
	d := net.Dialer{Timeout: 10 * time.Second}
	if from != "" {
		d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(from)}
	}
	c, err := d.Dial("tcp", ln.Addr().String())
	if errors.Is(err, syscall.ECONNRESET) {
		return nil
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// wantReset checks that c was refused: its read fails with ECONNRESET (or
// its dial did: c is nil).
func wantReset(t *testing.T, c net.Conn) {
	t.Helper()
	if c == nil {
		return
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Errorf("read on a refused conn from %v: %v, want ECONNRESET", c.LocalAddr(), err)
	}
}

// take receives n conns from ch, failing the test after a generous bound.
func take(t *testing.T, ch <-chan net.Conn, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for range n {
		select {
		case c := <-ch:
			cs = append(cs, c)
		case <-time.After(10 * time.Second):
			t.Fatalf("accepted %d conns, want %d", len(cs), n)
		}
	}
	return cs
}

// decided waits until a has admitted or refused n conns in all.
func decided(t *testing.T, a *transport.Admission, n uint64) transport.AdmissionStats {
	t.Helper()
	var s transport.AdmissionStats
	hubtest.Eventually(t, 10*time.Second, fmt.Sprintf("%d admission decisions", n), func() bool {
		s = a.Stats()
		return s.Admitted+s.Allowed+s.RefusedConns+s.RefusedPeer+s.RefusedRate >= n
	})
	return s
}

func TestAdmissionPolicyValidation(t *testing.T) {
	bad := []transport.AdmissionPolicy{
		{MaxConns: -1},
		{MaxConnsPerPeer: -1},
		{PeerBitsIPv4: 33},
		{PeerBitsIPv6: 129},
		{Rate: -1},
		{MaxLoopDelay: time.Millisecond, ResumeLoopDelay: 2 * time.Millisecond},
		{Allow: []netip.Prefix{{}}},
	}
	for _, p := range bad {
		if _, err := transport.NewAdmission(p); err == nil {
			t.Errorf("NewAdmission(%+v) succeeded, want an error", p)
		}
	}
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxLoopDelay: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	p := a.Policy()
	if p.PeerBitsIPv4 != 32 || p.PeerBitsIPv6 != 64 || p.ResumeLoopDelay != 20*time.Millisecond || p.ProbeInterval != 10*time.Millisecond {
		t.Errorf("defaults: %+v", p)
	}
}

func TestAdmissionMaxConnsRefusesTheSurplusAndReleasesOnClose(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxConns: 3})
	var dialed []net.Conn
	for range 5 {
		dialed = append(dialed, dialFrom(t, ln, ""))
	}
	ch := acceptAll(t, ln)
	got := take(t, ch, 3)
	s := decided(t, a, 5)
	if s.Admitted != 3 || s.RefusedConns != 2 || s.Open != 3 {
		t.Fatalf("stats %+v, want 3 admitted, 2 refused (conns), 3 open", s)
	}
	for i, c := range got {
		if c.RemoteAddr().String() != dialed[i].LocalAddr().String() {
			t.Errorf("accepted conn %d is from %v, want %v", i, c.RemoteAddr(), dialed[i].LocalAddr())
		}
	}
	wantReset(t, dialed[3])
	wantReset(t, dialed[4])

	got[0].Close()
	if s := a.Stats(); s.Open != 2 {
		t.Fatalf("after a Close, %d open, want 2", s.Open)
	}
	got[0].Close() // a second Close releases nothing more
	c := dialFrom(t, ln, "")
	next := take(t, ch, 1)[0]
	if next.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("admitted %v, want %v", next.RemoteAddr(), c.LocalAddr())
	}
	for _, c := range append(got[1:], next) {
		c.Close()
	}
	if s := a.Stats(); s.Open != 0 || s.Admitted != 4 || s.RefusedConns != 2 {
		t.Errorf("at the end: %+v, want 0 open, 4 admitted, 2 refused", s)
	}
}

func TestAdmissionPerPeerIPv4(t *testing.T) {
	for _, tc := range []struct {
		name             string
		bits             int
		admitted, peered uint64
	}{
		{"per /32, two addresses are two peers", 0, 4, 2},
		{"per /24, two addresses are one peer", 24, 2, 4},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxConnsPerPeer: 2, PeerBitsIPv4: tc.bits})
			var dialed []net.Conn
			for _, from := range []string{"127.0.0.2", "127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.3"} {
				dialed = append(dialed, dialFrom(t, ln, from))
			}
			ch := acceptAll(t, ln)
			got := take(t, ch, int(tc.admitted))
			s := decided(t, a, 6)
			if s.Admitted != tc.admitted || s.RefusedPeer != tc.peered || s.Open != int64(tc.admitted) {
				t.Fatalf("stats %+v, want %d admitted, %d refused (peer)", s, tc.admitted, tc.peered)
			}
			if tc.bits == 0 {
				wantReset(t, dialed[2])
				wantReset(t, dialed[5])
			} else {
				for _, c := range dialed[2:] {
					wantReset(t, c)
				}
			}
			for _, c := range got {
				c.Close()
			}
			if s := a.Stats(); s.Open != 0 {
				t.Errorf("%d open after closing all", s.Open)
			}
		})
	}
}

func TestAdmissionPerPeerIPv6AndMapped(t *testing.T) {
	// A dual-stack listener sees IPv4 peers as IPv4-mapped IPv6 addresses:
	// they count per IPv4 prefix, ::1 per IPv6 /64.
	ln, a := admitListener(t, nil, "[::]:0", transport.AdmissionPolicy{MaxConnsPerPeer: 1})
	port := ln.Addr().(*net.TCPAddr).Port
	dial := func(from, to string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(from)}, Timeout: 10 * time.Second}
		c, err := d.Dial("tcp", net.JoinHostPort(to, fmt.Sprint(port)))
		if err != nil {
			t.Skipf("dual-stack loopback unavailable: %v", err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	v6a := dial("::1", "::1")
	v6b := dial("::1", "::1")
	v4a := dial("127.0.0.2", "127.0.0.1")
	v4b := dial("127.0.0.3", "127.0.0.1")
	v4c := dial("127.0.0.3", "127.0.0.1")
	ch := acceptAll(t, ln)
	got := take(t, ch, 3)
	s := decided(t, a, 5)
	if s.Admitted != 3 || s.RefusedPeer != 2 {
		t.Fatalf("stats %+v, want 3 admitted, 2 refused (peer)", s)
	}
	for i, want := range []net.Conn{v6a, v4a, v4b} {
		if got[i].RemoteAddr().(*net.TCPAddr).Port != want.LocalAddr().(*net.TCPAddr).Port {
			t.Errorf("accepted %v, want the conn from %v", got[i].RemoteAddr(), want.LocalAddr())
		}
	}
	wantReset(t, v6b)
	wantReset(t, v4c)
	for _, c := range got {
		c.Close()
	}
}

func TestAdmissionPerPeerIPv6Prefix(t *testing.T) {
	// ::1 is the only IPv6 loopback address: a /128 limit and a /64 one
	// both count it as one peer, and a /0 limit counts every IPv6 peer
	// together while IPv4 peers stay apart.
	ln, a := admitListener(t, nil, "[::1]:0", transport.AdmissionPolicy{MaxConnsPerPeer: 2, PeerBitsIPv6: 128})
	var dialed []net.Conn
	for range 3 {
		dialed = append(dialed, dialFrom(t, ln, ""))
	}
	ch := acceptAll(t, ln)
	got := take(t, ch, 2)
	if s := decided(t, a, 3); s.Admitted != 2 || s.RefusedPeer != 1 {
		t.Fatalf("stats %+v, want 2 admitted, 1 refused", s)
	}
	wantReset(t, dialed[2])
	for _, c := range got {
		c.Close()
	}
}

func TestAdmissionAllowList(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{
		MaxConns: 1, MaxConnsPerPeer: 1,
		Rate: 1, RefuseOverRate: true, // one token: only the first unlisted conn gets it
		Allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.5/32"), netip.MustParsePrefix("127.0.1.0/24")},
	})
	transport.SetAdmissionClock(a, func() time.Duration { return 0 })
	first := dialFrom(t, ln, "127.0.0.2")
	var allowed []net.Conn
	for _, from := range []string{"127.0.0.5", "127.0.0.5", "127.0.1.9", "127.0.0.5"} {
		allowed = append(allowed, dialFrom(t, ln, from))
	}
	refused := dialFrom(t, ln, "127.0.0.3")
	ch := acceptAll(t, ln)
	got := take(t, ch, 5)
	s := decided(t, a, 6)
	if s.Admitted != 1 || s.Allowed != 4 || s.RefusedConns != 1 || s.Open != 1 {
		t.Fatalf("stats %+v, want 1 admitted, 4 allowed, 1 refused (conns), 1 open", s)
	}
	if got[0].RemoteAddr().String() != first.LocalAddr().String() {
		t.Errorf("first accepted %v, want %v", got[0].RemoteAddr(), first.LocalAddr())
	}
	wantReset(t, refused)
	for _, c := range got {
		c.Close()
	}
	if s := a.Stats(); s.Open != 0 {
		t.Errorf("%d open after closing all", s.Open)
	}
}

// fakeClock is a clock a test moves by hand.
type fakeClock struct{ ns atomic.Int64 }

func (c *fakeClock) now() time.Duration         { return time.Duration(c.ns.Load()) }
func (c *fakeClock) add(d time.Duration)        { c.ns.Add(int64(d)) }
func (c *fakeClock) use(a *transport.Admission) { transport.SetAdmissionClock(a, c.now) }

func TestAdmissionRateRefuses(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{Rate: 10, Burst: 2, RefuseOverRate: true})
	var clk fakeClock
	clk.use(a)
	var dialed []net.Conn
	for range 5 {
		dialed = append(dialed, dialFrom(t, ln, ""))
	}
	ch := acceptAll(t, ln)
	got := take(t, ch, 2)
	if s := decided(t, a, 5); s.Admitted != 2 || s.RefusedRate != 3 {
		t.Fatalf("burst of 2: stats %+v, want 2 admitted, 3 refused (rate)", s)
	}
	for _, c := range dialed[2:] {
		wantReset(t, c)
	}
	clk.add(150 * time.Millisecond) // 1.5 tokens at 10/s
	dialFrom(t, ln, "")
	late := dialFrom(t, ln, "")
	got = append(got, take(t, ch, 1)...)
	if s := decided(t, a, 7); s.Admitted != 3 || s.RefusedRate != 4 {
		t.Fatalf("after 150ms: stats %+v, want 3 admitted, 4 refused (rate)", s)
	}
	wantReset(t, late)
	if s := a.Stats(); s.PausedRate != 0 {
		t.Errorf("refusing pacing paused for %v", s.PausedRate)
	}
	for _, c := range got {
		c.Close()
	}
}

func TestAdmissionRatePausesWithConnsInTheBacklog(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{Rate: 10, Burst: 1})
	var clk fakeClock
	clk.use(a)
	var dialed []net.Conn
	for range 3 {
		dialed = append(dialed, dialFrom(t, ln, ""))
	}
	ch := acceptAll(t, ln)
	got := take(t, ch, 1)
	// The bucket is empty until the clock moves 100ms: Accept cannot take
	// the second conn, whatever the real time.
	hubtest.Eventually(t, 10*time.Second, "a paused listener", func() bool {
		clk.add(time.Microsecond) // the pause clock runs on the fake clock
		return a.Stats().PausedRate > 0
	})
	if len(ch) != 0 {
		t.Fatalf("a paused listener accepted a conn")
	}
	clk.add(100 * time.Millisecond)
	got = append(got, take(t, ch, 1)...)
	clk.add(100 * time.Millisecond)
	got = append(got, take(t, ch, 1)...)
	for i, c := range got {
		if c.RemoteAddr().String() != dialed[i].LocalAddr().String() {
			t.Errorf("accepted %v, want %v", c.RemoteAddr(), dialed[i].LocalAddr())
		}
		c.Close()
	}
	s := a.Stats()
	if s.Admitted != 3 || s.RefusedRate != 0 || s.PausedRate < 100*time.Millisecond {
		t.Errorf("stats %+v, want 3 admitted, none refused, at least 100ms paused", s)
	}
}

func TestAdmissionPausesWhileTheLoopIsLate(t *testing.T) {
	h := hubtest.NewHub(t)
	ln, a := admitListener(t, h, "127.0.0.1:0", transport.AdmissionPolicy{
		MaxLoopDelay: 15 * time.Millisecond, ProbeInterval: time.Millisecond,
	})
	ch := acceptAll(t, ln)
	dialFrom(t, ln, "")
	take(t, ch, 1)[0].Close() // admitted before any load

	// Load: a callback that holds the loop 30ms, again at every pass,
	// until stop is set. Every probe then runs at least ~29ms late.
	var stop atomic.Bool
	var wg sync.WaitGroup
	wg.Add(1)
	var hold func()
	hold = func() {
		if stop.Load() {
			wg.Done()
			return
		}
		time.Sleep(30 * time.Millisecond) // the load itself: a loop held busy
		if h.Schedule(hold) != nil {
			wg.Done()
		}
	}
	if err := h.Schedule(hold); err != nil {
		t.Fatal(err)
	}
	hubtest.Eventually(t, 10*time.Second, "shedding", func() bool { return a.Stats().Shedding })
	c := dialFrom(t, ln, "")
	// The conn arrived while the listener sheds; it stays shedding for as
	// long as the loop is held, so the conn waits in the backlog.
	hubtest.Eventually(t, 10*time.Second, "50ms of shedding", func() bool { return a.Stats().PausedLoopDelay >= 50*time.Millisecond })
	if len(ch) != 0 || !a.Stats().Shedding {
		t.Fatalf("a shedding listener accepted a conn (shedding %v)", a.Stats().Shedding)
	}
	stop.Store(true)
	wg.Wait()
	got := take(t, ch, 1)[0]
	if got.RemoteAddr().String() != c.LocalAddr().String() {
		t.Errorf("accepted %v, want %v", got.RemoteAddr(), c.LocalAddr())
	}
	got.Close()
	s := a.Stats()
	if s.Shedding || s.Admitted != 2 || s.PausedLoopDelay < 50*time.Millisecond {
		t.Errorf("stats %+v, want resumed, 2 admitted, at least 50ms shed", s)
	}
}

func TestAdmissionOnFirstOncePerReason(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxConns: 1})
	var mu sync.Mutex
	var heard []transport.Reason
	a.OnFirst(func(r transport.Reason) {
		mu.Lock()
		heard = append(heard, r)
		mu.Unlock()
	})
	for range 4 {
		dialFrom(t, ln, "")
	}
	ch := acceptAll(t, ln)
	take(t, ch, 1)[0].Close()
	decided(t, a, 4)
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 1 || heard[0] != transport.ReasonConns || heard[0].String() != "conns" {
		t.Errorf("OnFirst heard %v, want [conns] once", heard)
	}
}

func TestAdmissionNoLeakedSlots(t *testing.T) {
	// Connect/close cycles through every path that closes an admitted conn:
	// the server's Close, a move to another hub (the slot goes with it),
	// and closing both ends in either order. Not one slot may be left.
	h2 := hubtest.NewHub(t)
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxConns: 2, MaxConnsPerPeer: 1})
	cycles := 10000
	if testing.Short() {
		cycles = 1000
	}
	addr := ln.Addr().String()
	for i := range cycles {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		sc, err := ln.AcceptHub()
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			sc.Close()
			c.Close()
		case 1:
			c.Close()
			sc.Close()
		case 2:
			moved, err := transport.NewConnHub(h2, sc)
			if err != nil {
				t.Fatal(err)
			}
			sc.Close()
			if got := a.Stats().Open; got != 1 {
				t.Fatalf("cycle %d: %d open after the moved conn's old half closed, want 1", i, got)
			}
			moved.Close()
			c.Close()
		}
		if s := a.Stats(); s.Open != 0 || s.RefusedPeer+s.RefusedConns != 0 {
			t.Fatalf("cycle %d: %+v, want nothing open or refused", i, s)
		}
	}
	if s := a.Stats(); s.Admitted != uint64(cycles) {
		t.Errorf("admitted %d, want %d", s.Admitted, cycles)
	}
}

// pausedListener returns a listener paused by the rate, with a conn in its
// backlog: its clock is frozen, so after the one token (spent here) no
// other ever comes.
func pausedListener(t *testing.T) (*transport.Listener, *transport.Admission) {
	t.Helper()
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{Rate: 1, Burst: 1})
	var clk fakeClock
	clk.use(a)
	dialFrom(t, ln, "")
	dialFrom(t, ln, "")
	c, err := ln.Accept() // the one token
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
	return ln, a
}

func TestAdmissionPausedAcceptHonoursDeadlineAndClose(t *testing.T) {
	// A listener paused by the rate still fails Accept at its deadline and
	// at Close, as net's does.
	ln, a := pausedListener(t)
	ln.SetDeadline(time.Now().Add(50 * time.Millisecond))
	if _, err := ln.Accept(); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("paused Accept past its deadline: %v, want os.ErrDeadlineExceeded", err)
	}
	ln.SetDeadline(time.Time{})
	done := async(func() (int, error) { _, err := ln.Accept(); return 0, err })
	waitParked(t, 1)
	ln.Close()
	select {
	case r := <-done:
		if !errors.Is(r.err, net.ErrClosed) {
			t.Errorf("paused Accept after Close: %v, want net.ErrClosed", r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not wake a paused Accept")
	}
	if s := a.Stats(); s.Admitted != 1 || s.RefusedRate != 0 {
		t.Errorf("stats %+v, want 1 admitted, none refused", s)
	}
}

func TestAdmissionSetAdmissionNilAdmitsEverything(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxConns: 1})
	ch := acceptAll(t, ln)
	dialFrom(t, ln, "")
	first := take(t, ch, 1)[0]
	ln.SetAdmission(nil)
	if ln.Admission() != nil {
		t.Fatal("Admission() after SetAdmission(nil) is not nil")
	}
	dialFrom(t, ln, "")
	dialFrom(t, ln, "")
	for _, c := range take(t, ch, 2) {
		c.Close()
	}
	first.Close() // its slot is released all the same
	if s := a.Stats(); s.Open != 0 || s.Admitted != 1 || s.RefusedConns != 0 {
		t.Errorf("stats %+v, want 0 open, 1 admitted, none refused", s)
	}
}

func TestAdmissionUnixPeersAreLimitedInTotalOnly(t *testing.T) {
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConns: 2, MaxConnsPerPeer: 1})
	if err != nil {
		t.Fatal(err)
	}
	ln := listen(t, nil, "unix")
	ln.SetAdmission(a)
	var dialed []net.Conn
	for range 3 {
		c, err := net.Dial("unix", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		dialed = append(dialed, c)
	}
	ch := acceptAll(t, ln)
	got := take(t, ch, 2)
	if s := decided(t, a, 3); s.Admitted != 2 || s.RefusedConns != 1 || s.RefusedPeer != 0 {
		t.Fatalf("stats %+v, want 2 admitted, 1 refused (conns), none per peer", s)
	}
	for _, c := range got {
		c.Close()
	}
}

// TestAdmissionRefusalsYieldToServedWork: while Accept works through a
// backlog of conns to refuse, other goroutines of the process keep
// running between refusals, even on one P. Without the yield, a goroutine
// sampling the refusal count saw it jump from 0 to the whole backlog (one
// accept loop held the only P); with it, it sees the count step up.
func TestAdmissionRefusalsYieldToServedWork(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	const storm = 200
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxConnsPerPeer: 1})
	// One admitted conn from the peer, then a backlog of conns that the
	// per-peer limit refuses.
	for range storm + 1 {
		dialFrom(t, ln, "127.0.0.1")
	}

	seen := make(map[uint64]bool)
	stop := make(chan struct{})
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for {
			select {
			case <-stop:
				return
			default:
			}
			if r := a.Stats().RefusedPeer; r > 0 && r < storm {
				seen[r] = true
			}
			runtime.Gosched()
		}
	}()
	ch := acceptAll(t, ln)
	take(t, ch, 1)
	decided(t, a, storm+1)
	close(stop)
	<-sampled
	if len(seen) < storm/4 {
		t.Errorf("a goroutine running beside the accept loop saw %d of the %d intermediate refusal counts, want at least %d: the loop held the P through the refusals", len(seen), storm-1, storm/4)
	}
}

// TestAdmissionPausedAcceptExcludesARawWrite: a paused Accept waits in the
// listener's write direction, so a raw write on the listener
// (SyscallConn().Write) must wait for the Accept to leave rather than wait
// in the same direction beside it (one waiter per direction: two would
// share its token and its bookkeeping). Close then fails both.
func TestAdmissionPausedAcceptExcludesARawWrite(t *testing.T) {
	ln, _ := pausedListener(t)
	accepted := async(func() (int, error) { _, err := ln.Accept(); return 0, err })
	waitParked(t, 1)
	raw, err := ln.SyscallConn()
	if err != nil {
		t.Fatal(err)
	}
	called := make(chan struct{}, 1)
	wrote := async(func() (int, error) {
		return 0, raw.Write(func(uintptr) bool {
			called <- struct{}{}
			return false // wait for writability, which a listener never has
		})
	})
	select {
	case <-called:
		t.Error("a raw write on the listener ran while a paused Accept waited in its direction")
	case <-time.After(100 * time.Millisecond): // long enough for a raw write that did not wait
	}
	ln.Close()
	for name, ch := range map[string]<-chan result{"paused Accept": accepted, "raw write": wrote} {
		select {
		case r := <-ch:
			if !errors.Is(r.err, net.ErrClosed) {
				t.Errorf("%s after Close: %v, want net.ErrClosed", name, r.err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("%s still blocked 10 s after Close", name)
		}
	}
}

// SetAdmission swaps the gate and then wakes a paused Accept. A swap that
// lands between Accept's load of the gate and its Prepare has its wake
// dropped by that Prepare; Accept must still see the new gate rather than
// wait on the old one, which nothing wakes any more (shedding with no probe
// to end it, and detached).
func TestAdmissionSwapBeforeAPausedAcceptPreparesIsSeen(t *testing.T) {
	ln, a := admitListener(t, nil, "127.0.0.1:0", transport.AdmissionPolicy{MaxLoopDelay: time.Hour})
	transport.ForceShedding(a)
	dialFrom(t, ln, "") // waits in the backlog
	var once sync.Once
	transport.SetAcceptGateHook(t, func() {
		once.Do(func() { ln.SetAdmission(nil) })
	})
	got := async(func() (int, error) {
		c, err := ln.Accept()
		if err == nil {
			c.Close()
		}
		return 0, err
	})
	if r := await(t, got, 10*time.Second, "Accept after the gate was removed"); r.err != nil {
		t.Fatalf("Accept: %v", r.err)
	}
}
