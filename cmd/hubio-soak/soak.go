package main

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// config is what a soak run does; see the flags in main.go.
type config struct {
	Duration    time.Duration
	Clients     int
	RPCsPerConn int
	StreamMsgs  int
	Restart     time.Duration
	FaultRate   float64
	Seed        int64
	NoWrap      bool // no fault wrappers at all (to tell their cost from the hub's)
	Std         bool // package net instead of the hub (implies NoWrap): a baseline
	// RPCTimeout is a unary RPC's deadline (a stream gets twice as long).
	// An RPC on a fault-free conn that runs out of it outside a restart
	// is a failure (a lost wakeup looks like this), so it is generous:
	// a loaded machine must not reach it. RPCs on faulted conns are
	// abandoned sooner (see faultedGiveUp).
	RPCTimeout time.Duration
	// onUnary, if set, is the servers' unary hook (tests inject failures
	// through it).
	onUnary func(ctx context.Context, in []byte) ([]byte, error)
}

// Server kinds, rotated at each restart: every way a hub server is built.
const (
	kindListen  = iota // grpcopt.Listen: conns born on the hub
	kindStd            // net.Listen + grpcopt.ServerOption: conns moved
	kindWrapped        // netutil.LimitListener(net.Listen) + ServerOption: moved from beneath a wrapper
	numServerKinds
)

var kindNames = [numServerKinds]string{"grpcopt.Listen", "net.Listen+ServerOption", "LimitListener+ServerOption"}

// kindStats is what the servers of one kind saw over their lives.
type kindStats struct {
	Lives     int64
	Accepted  int64  // conns accepted
	HubEvents uint64 // readiness events on the server hub during their lives
}

// result is what a soak run saw.
type result struct {
	Elapsed                   time.Duration
	RPCs, RPCErrors           int64
	Messages                  int64 // messages echoed and verified (unary and stream)
	Conns, Restarts           int64
	Lost, Duplicated, Corrupt int64
	Codes                     map[codes.Code]int64
	ClientFaults, ServerFault testutil.FaultCounts
	FDs, Goroutines           [2]int // at start and end
	HeapInuse                 [2]uint64
	Kinds                     [numServerKinds]kindStats // nil-free; unused with -std

	// Failed RPCs, judged (see soak.judge): excused because a fault was
	// injected into their conn, excused by a restart, or neither.
	// ExcusedResetDial are those excused as faulted that never got a conn
	// because the server reset it before the client's connect completed
	// (see channel.resetDials); a server-side reset must explain each.
	ExcusedFaulted, ExcusedRestart, ExcusedResetDial int64
	Unexcused                                        map[codes.Code]int64
	UnexcusedSamples                                 []string // the first few, for the report
	std                                              bool
}

// problems lists what makes the run a failure.
func (r *result) problems() []string {
	var p []string
	if r.Lost+r.Duplicated+r.Corrupt > 0 {
		p = append(p, fmt.Sprintf("%d lost, %d duplicated, %d corrupted messages", r.Lost, r.Duplicated, r.Corrupt))
	}
	if r.FDs[1] > r.FDs[0] {
		p = append(p, fmt.Sprintf("fds leaked: %d at start, %d at end", r.FDs[0], r.FDs[1]))
	}
	if r.Goroutines[1] > r.Goroutines[0] {
		p = append(p, fmt.Sprintf("goroutines leaked: %d at start, %d at end", r.Goroutines[0], r.Goroutines[1]))
	}
	if r.Messages == 0 {
		p = append(p, "no message got through")
	}
	if r.ExcusedResetDial > int64(r.ServerFault.Reset) {
		p = append(p, fmt.Sprintf("%d RPCs failed on dials the server reset, but the server injected only %d resets",
			r.ExcusedResetDial, r.ServerFault.Reset))
	}
	if n := sum(r.Unexcused); n > 0 {
		p = append(p, fmt.Sprintf("%d RPCs failed on fault-free conns outside restart windows (by status code: %s); first: %s",
			n, codeList(r.Unexcused), strings.Join(r.UnexcusedSamples, "; ")))
	}
	if !r.std {
		for k, ks := range r.Kinds {
			switch {
			case ks.Lives == 0:
			case ks.Accepted == 0:
				p = append(p, fmt.Sprintf("server kind %s: no conn accepted in %d lives", kindNames[k], ks.Lives))
			case ks.HubEvents == 0:
				p = append(p, fmt.Sprintf("server kind %s: its conns never reached the hub (%d conns accepted in %d lives, 0 hub events)",
					kindNames[k], ks.Accepted, ks.Lives))
			}
		}
	}
	return p
}

func sum(m map[codes.Code]int64) (n int64) {
	for _, v := range m {
		n += v
	}
	return n
}

// codeList prints m as "Unavailable=3 DeadlineExceeded=1", by code, or
// "none".
func codeList(m map[codes.Code]int64) string {
	var cs []codes.Code
	for c := range m {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
	var b strings.Builder
	for _, c := range cs {
		fmt.Fprintf(&b, " %v=%d", c, m[c])
	}
	if b.Len() == 0 {
		return "none"
	}
	return b.String()[1:]
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "ran %v: %d connections, %d server restarts\n", r.Elapsed.Round(time.Millisecond), r.Conns, r.Restarts)
	fmt.Fprintf(w, "RPCs: %d done, %d failed; messages verified: %d\n", r.RPCs, r.RPCErrors, r.Messages)
	fmt.Fprintf(w, "lost: %d, duplicated: %d, corrupted: %d\n", r.Lost, r.Duplicated, r.Corrupt)
	fmt.Fprintln(w, "errors by status code:", codeList(r.Codes))
	fmt.Fprintf(w, "failed RPCs judged: %d on faulted conns (%d of them on dials the server reset), %d in restart windows, %d on fault-free conns outside restarts (%s)\n",
		r.ExcusedFaulted, r.ExcusedResetDial, r.ExcusedRestart, sum(r.Unexcused), codeList(r.Unexcused))
	for _, sample := range r.UnexcusedSamples {
		fmt.Fprintln(w, "  unexcused:", sample)
	}
	if !r.std {
		for k, ks := range r.Kinds {
			fmt.Fprintf(w, "server kind %s: %d lives, %d conns accepted, %d server-hub events\n",
				kindNames[k], ks.Lives, ks.Accepted, ks.HubEvents)
		}
	}
	f := func(name string, c testutil.FaultCounts) {
		fmt.Fprintf(w, "faults injected (%s): latency=%d bandwidth=%d stall=%d reset=%d half-open=%d (bytes swallowed: %d)\n",
			name, c.Latency, c.Bandwidth, c.Stall, c.Reset, c.HalfOpen, c.SwallowedBytes)
	}
	f("client side", r.ClientFaults)
	f("server side", r.ServerFault)
	fmt.Fprintf(w, "open fds: %d at start, %d at end\n", r.FDs[0], r.FDs[1])
	fmt.Fprintf(w, "goroutines: %d at start, %d at end\n", r.Goroutines[0], r.Goroutines[1])
	fmt.Fprintf(w, "heap in use: %.1f MiB at start, %.1f MiB at end\n", mib(r.HeapInuse[0]), mib(r.HeapInuse[1]))
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }

// soak is one run's shared state.
type soak struct {
	cfg    config
	hub    *poller.Hub // the clients' conns and the faults' timers
	srvHub *poller.Hub // the servers' conns alone, so its Stats say whether they reached a hub
	dialer *testutil.FaultDialer
	res    result
	start  time.Time

	mu     sync.Mutex // guards the fields below, res.Codes, res.Unexcused* and rnd
	rnd    *rand.Rand
	addr   string
	life   *life // the current server's
	lives  []*life
	tags   map[string]*connTag // by the client side's local address
	kinds  [numServerKinds]kindStats
	served int // servers started, for the rotation

	serverFaults testutil.FaultCounts // of servers already stopped
}

// life is one server's, from start to stop. Fields other than the times
// and events are set before the server is published, then immutable.
type life struct {
	kind   int
	server *grpc.Server
	lis    *testutil.FaultListener // nil without fault wrappers
	events uint64                  // server hub events at its start
	// Times, under soak.mu: serving when Serve started; stopping when
	// GracefulStop started (zero while serving); forced when Stop cut
	// GracefulStop short (zero if it finished in time); next is when the
	// next server is serving (zero until then).
	serving, stopping, forced, next time.Time
}

// connTag is what is known about one connection, client and server side
// together, keyed by the client's local address. A conn is faulted once
// either side got a fault. Tags are never removed: a port reused later
// inherits the tag, which can only excuse more, never less. Under
// soak.mu.
type connTag struct {
	faulted bool
	life    *life // the server life that accepted it; nil until accepted
}

// restartGrace is how long after a new server is serving a restart still
// excuses a failure: grpc-go's reconnect backoff after a refused dial is
// 1 s (±20 %), 1.6 s after two.
const restartGrace = 2 * time.Second

// faultedGiveUp is how long an RPC on a channel with a faulted conn runs
// before the client gives up on it (a half-open conn would otherwise hold
// it until its deadline).
const faultedGiveUp = 2 * time.Second

// tag returns the tag of the conn whose client side is at addr. s.mu must
// be held.
func (s *soak) tagLocked(addr net.Addr) *connTag {
	if addr == nil {
		return nil
	}
	k := addr.String()
	t := s.tags[k]
	if t == nil {
		t = &connTag{}
		s.tags[k] = t
	}
	return t
}

// run soaks for cfg.Duration and returns what it saw. Progress goes to
// progress once a second.
func run(cfg config, progress io.Writer) (*result, error) {
	if cfg.Std {
		cfg.NoWrap = true
	}
	if cfg.RPCTimeout <= 0 {
		cfg.RPCTimeout = 5 * time.Second
	}
	s := &soak{cfg: cfg, rnd: rand.New(rand.NewPCG(uint64(cfg.Seed), 0)), tags: map[string]*connTag{}}
	s.res.Codes = map[codes.Code]int64{}
	s.res.Unexcused = map[codes.Code]int64{}
	s.res.std = cfg.Std
	s.res.FDs[0], s.res.Goroutines[0], s.res.HeapInuse[0] = openFDs(), runtime.NumGoroutine(), heapInuse()
	s.start = time.Now()

	hub, err := poller.New()
	if err != nil {
		return nil, err
	}
	s.hub = hub
	if s.srvHub, err = poller.New(); err != nil {
		hub.Close()
		return nil, err
	}
	if err := s.startServer("127.0.0.1:0"); err != nil {
		hub.Close()
		s.srvHub.Close()
		return nil, err
	}
	s.dialer = testutil.NewFaultDialer(hub, testutil.Faults{})
	s.dialer.OnDial(func(c *testutil.FaultConn) { s.injectFaults(c, c.LocalAddr()) })

	ctx, cancel := context.WithTimeout(context.Background(), cfg.Duration)
	defer cancel()
	var wg sync.WaitGroup
	for i := range cfg.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.client(ctx, uint64(i))
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.restarter(ctx)
	}()
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(time.Second)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
				fmt.Fprintf(progress, "\r%3.0fs  RPCs %d  failed %d  conns %d  lost/dup/corrupt %d/%d/%d ",
					time.Since(s.start).Seconds(), atomic.LoadInt64(&s.res.RPCs), atomic.LoadInt64(&s.res.RPCErrors),
					atomic.LoadInt64(&s.res.Conns), atomic.LoadInt64(&s.res.Lost),
					atomic.LoadInt64(&s.res.Duplicated), atomic.LoadInt64(&s.res.Corrupt))
			}
		}
	}()
	wg.Wait()
	fmt.Fprintln(progress)

	s.mu.Lock()
	l := s.life
	s.mu.Unlock()
	s.stopServer(l, false)
	s.mu.Lock()
	s.res.Kinds = s.kinds
	s.res.ServerFault = s.serverFaults
	s.mu.Unlock()
	s.res.ClientFaults = s.dialer.Counts()
	hub.Close()
	s.srvHub.Close()
	s.res.Elapsed = time.Since(s.start)

	// Everything is closed: fds and goroutines must come back.
	settle := time.Now().Add(10 * time.Second)
	for time.Now().Before(settle) && (openFDs() > s.res.FDs[0] || runtime.NumGoroutine() > s.res.Goroutines[0]) {
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	s.res.FDs[1], s.res.Goroutines[1], s.res.HeapInuse[1] = openFDs(), runtime.NumGoroutine(), heapInuse()
	return &s.res, nil
}

// acceptRecorder tags each conn its listener accepts with the server life
// and counts it; it returns the conn itself, so the server sees the
// listener's own conn type.
type acceptRecorder struct {
	net.Listener
	s *soak
	l *life
}

func (a *acceptRecorder) Accept() (net.Conn, error) {
	c, err := a.Listener.Accept()
	if err != nil {
		return nil, err
	}
	a.s.mu.Lock()
	if t := a.s.tagLocked(c.RemoteAddr()); t != nil {
		t.life = a.l
	}
	a.s.kinds[a.l.kind].Accepted++
	a.s.mu.Unlock()
	return c, nil
}

// startServer starts an echo server at addr, of the next kind in the
// rotation (grpcopt.Listen; net.Listen with grpcopt.ServerOption; a
// netutil.LimitListener over net.Listen with ServerOption), with the
// server's faults injected through a FaultListener on the grpcopt.Listen
// kind (a FaultConn over a package net conn cannot be moved onto the hub,
// so the other kinds get client-side faults only). With -std, always a
// plain package net server.
func (s *soak) startServer(addr string) error {
	s.mu.Lock()
	kind := s.served % numServerKinds
	s.served++
	s.mu.Unlock()
	var l net.Listener
	var err error
	// The previous server's port may linger briefly; retry for a while.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if kind == kindListen && !s.cfg.Std {
			l, err = grpcopt.Listen(s.srvHub, "tcp", addr)
		} else {
			l, err = net.Listen("tcp", addr)
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	lf := &life{kind: kind, events: s.srvHub.Stats().Events}
	bound := l.Addr().String()
	opts := []grpc.ServerOption{grpc.ConnectionTimeout(5 * time.Second)}
	if !s.cfg.Std {
		opts = append(opts, grpcopt.ServerOption(s.srvHub, nil))
	}
	switch {
	case s.cfg.Std:
	case kind == kindListen && !s.cfg.NoWrap:
		lf.lis = testutil.NewFaultListener(s.hub, l, testutil.Faults{})
		lf.lis.OnAccept(func(c *testutil.FaultConn) { s.injectFaults(c, c.RemoteAddr()) })
		l = lf.lis
	case kind == kindWrapped:
		l = netutil.LimitListener(l, 1024)
	}
	l = &acceptRecorder{Listener: l, s: s, l: lf}
	lf.server = grpc.NewServer(opts...)
	testutil.RegisterEchoServer(lf.server, &testutil.EchoServer{OnUnary: s.cfg.onUnary})
	go lf.server.Serve(l)
	s.mu.Lock()
	now := time.Now()
	if prev := s.life; prev != nil {
		prev.next = now
	}
	lf.serving = now
	s.life, s.addr = lf, bound
	s.lives = append(s.lives, lf)
	s.kinds[kind].Lives++
	s.mu.Unlock()
	return nil
}

// stopServer stops l's server gracefully, forcefully after 2 s, and
// accounts for its life.
func (s *soak) stopServer(l *life, graceful bool) {
	s.mu.Lock()
	l.stopping = time.Now()
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		if graceful {
			l.server.GracefulStop()
		} else {
			l.server.Stop()
		}
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		s.mu.Lock()
		l.forced = time.Now()
		s.mu.Unlock()
		l.server.Stop()
		<-done
	}
	events := s.srvHub.Stats().Events - l.events
	s.mu.Lock()
	s.kinds[l.kind].HubEvents += events
	if l.lis != nil {
		s.serverFaults = addCounts(s.serverFaults, l.lis.Counts())
	}
	s.mu.Unlock()
}

// restarter stops the server gracefully (forcefully after 2 s) and starts
// one of the next kind on the same address, every cfg.Restart.
func (s *soak) restarter(ctx context.Context) {
	if s.cfg.Restart <= 0 {
		return
	}
	t := time.NewTicker(s.cfg.Restart)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		s.mu.Lock()
		l, addr := s.life, s.addr
		s.mu.Unlock()
		s.stopServer(l, true)
		if err := s.startServer(addr); err != nil {
			fmt.Fprintln(os.Stderr, "hubio-soak: restart:", err)
			return
		}
		atomic.AddInt64(&s.res.Restarts, 1)
	}
}

// injectFaults gives a new conn (either side) a random fault, scheduled on
// the hub's timers where it happens later in the conn's life, and tags the
// conn (by its client side's address, clientAddr) as faulted if it got
// one.
func (s *soak) injectFaults(c *testutil.FaultConn, clientAddr net.Addr) {
	s.mu.Lock()
	p := s.rnd.Float64()
	kind := s.rnd.IntN(5)
	after := time.Duration(s.rnd.IntN(100)) * time.Millisecond
	latency := time.Duration(1+s.rnd.IntN(20)) * time.Millisecond
	if p < s.cfg.FaultRate {
		if t := s.tagLocked(clientAddr); t != nil {
			t.faulted = true
		}
	}
	s.mu.Unlock()
	if p >= s.cfg.FaultRate {
		return
	}
	switch kind {
	case 0:
		c.SetFaults(testutil.Faults{Latency: latency})
	case 1:
		c.SetFaults(testutil.Faults{Bandwidth: 256 << 10})
	case 2:
		s.hub.AfterFunc(after, func() { c.Stall(300 * time.Millisecond) })
	case 3:
		s.hub.AfterFunc(after, func() { go c.Reset() })
	case 4:
		s.hub.AfterFunc(after, func() { go c.HalfOpen() })
	}
}

// channel is one client's grpc.ClientConn and the tags of the conns it
// dialed.
//
// resetDials counts its dials that failed with ECONNRESET: the kernel had
// completed the connect and the server reset the conn before the dialer
// saw it complete. Only a server-side reset fault does that outside a
// restart (a lost wakeup makes a dial time out, never reset), and on a
// loaded machine the dialer can see a connect complete tens of
// milliseconds late, so a reset injected 0-100 ms after the accept lands
// there. Such a dial leaves no conn and no tag to judge the RPC by.
type channel struct {
	ec         *testutil.EchoClient
	mu         sync.Mutex // guards tags and resetDials
	tags       []*connTag
	resetDials int
}

// faulted reports whether any conn of ch got a fault. s.mu must be held.
func (ch *channel) faultedLocked() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	for _, t := range ch.tags {
		if t.faulted {
			return true
		}
	}
	return false
}

// takeResetDialLocked consumes one of ch's reset dials, if any: each
// excuses one failed RPC. s.mu must be held.
func (ch *channel) takeResetDialLocked() bool {
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.resetDials == 0 {
		return false
	}
	ch.resetDials--
	return true
}

// client churns connections until ctx ends: dial, RPCs and a stream, close.
func (s *soak) client(ctx context.Context, id uint64) {
	var seq uint64
	for ctx.Err() == nil {
		s.mu.Lock()
		addr := s.addr
		s.mu.Unlock()
		ch := &channel{}
		dial := grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			c, err := s.dialer.Dial(ctx, a)
			if err == nil {
				s.mu.Lock()
				t := s.tagLocked(c.LocalAddr())
				s.mu.Unlock()
				ch.mu.Lock()
				ch.tags = append(ch.tags, t)
				ch.mu.Unlock()
			} else if errors.Is(err, syscall.ECONNRESET) {
				ch.mu.Lock()
				ch.resetDials++
				ch.mu.Unlock()
			}
			return c, err
		})
		if s.cfg.Std {
			dial = grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", a)
			})
		} else if s.cfg.NoWrap {
			dial = grpcopt.DialOption(s.hub)
		}
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), dial)
		if err != nil {
			continue
		}
		atomic.AddInt64(&s.res.Conns, 1)
		ch.ec = testutil.NewEchoClient(cc)
		ok := true
		for i := 0; i < s.cfg.RPCsPerConn && ok && ctx.Err() == nil; i++ {
			seq++
			ok = s.unary(ctx, ch, id, seq)
		}
		if ok && ctx.Err() == nil {
			seq += uint64(s.cfg.StreamMsgs)
			ok = s.stream(ctx, ch, id, seq-uint64(s.cfg.StreamMsgs)+1)
		}
		cc.Close()
		if !ok {
			// The conn failed (a fault, a restart): back off, then churn on.
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
}

// payload builds a message: client id, sequence number, random bytes, and
// a CRC-32 of all of it at the end.
func (s *soak) payload(id, seq uint64) []byte {
	s.mu.Lock()
	n := 16 + s.rnd.IntN(4096)
	b := make([]byte, n+4)
	for i := 16; i < n; i++ {
		b[i] = byte(s.rnd.Uint32())
	}
	s.mu.Unlock()
	binary.BigEndian.PutUint64(b, id)
	binary.BigEndian.PutUint64(b[8:], seq)
	binary.BigEndian.PutUint32(b[n:], crc32.ChecksumIEEE(b[:n]))
	return b
}

// check verifies an echoed message and returns its sequence number.
func check(b []byte, id uint64) (uint64, bool) {
	if len(b) < 20 {
		return 0, false
	}
	n := len(b) - 4
	if crc32.ChecksumIEEE(b[:n]) != binary.BigEndian.Uint32(b[n:]) || binary.BigEndian.Uint64(b) != id {
		return 0, false
	}
	return binary.BigEndian.Uint64(b[8:]), true
}

// rpcContext returns the context of one RPC on ch: its deadline is d, but
// once faultedGiveUp has passed, an RPC on a channel with a faulted conn
// is abandoned (a half-open conn would hold it until its deadline).
func (s *soak) rpcContext(ctx context.Context, ch *channel, d time.Duration) (context.Context, context.CancelFunc) {
	rctx, cancel := context.WithTimeout(ctx, d)
	t := time.AfterFunc(faultedGiveUp, func() {
		s.mu.Lock()
		faulted := ch.faultedLocked()
		s.mu.Unlock()
		if faulted {
			cancel()
		}
	})
	return rctx, func() { t.Stop(); cancel() }
}

// fail counts a failed RPC, unless it failed because the run ended, and
// judges it: an RPC that ran from start until now and failed with err,
// on the conn p names (if grpc-go got that far), of channel ch.
//
// The failure is excused when
//   - the conn got a fault, on either side (without a conn: any conn of
//     the channel did); or
//   - it ran on a conn of a server that was stopped before it failed
//     (GracefulStop, then Stop after 2 s, end the server's RPCs), unless
//     it failed with DeadlineExceeded (a restart ends an RPC promptly,
//     never by its deadline, while a lost wakeup ends it by its deadline
//     alone) or it was in flight from before GracefulStop until Stop cut
//     it short (a fault-free RPC that held GracefulStop for 2 s was
//     hanging); or
//   - without a conn, it was in flight at some point of a restart window:
//     from the old server's GracefulStop until restartGrace after the new
//     one is serving. The RPC's whole life counts, so a failure up to a
//     deadline after the window is excused too; but not DeadlineExceeded:
//     during a restart a dial is refused at once (and grpc-go fails the
//     RPC, or retries after its backoff), it does not hang.
//
// Any other failure is unexcused and fails the run.
func (s *soak) fail(ctx context.Context, ch *channel, p *peer.Peer, start time.Time, err error) {
	// The run is over: ctx's own timer may fire after the RPC's, which
	// inherits the same deadline.
	if dl, _ := ctx.Deadline(); ctx.Err() != nil || !time.Now().Before(dl) {
		return
	}
	atomic.AddInt64(&s.res.RPCErrors, 1)
	s.judge(ch, p, start, time.Now(), err)
}

// judge counts a failed RPC that ran from start to end, as fail says.
func (s *soak) judge(ch *channel, p *peer.Peer, start, end time.Time, err error) {
	code := status.Code(err)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.res.Codes[code]++
	var t *connTag
	if p != nil && p.LocalAddr != nil {
		t = s.tags[p.LocalAddr.String()]
	}
	var why string
	switch {
	case t != nil && t.faulted, t == nil && ch.faultedLocked():
		s.res.ExcusedFaulted++
		return
	case t == nil && code == codes.Unavailable && ch.takeResetDialLocked():
		// Counted against the server's resets in problems.
		s.res.ExcusedFaulted++
		s.res.ExcusedResetDial++
		return
	case t != nil && t.life != nil && stoppedUnder(t.life, start, end) && code != codes.DeadlineExceeded:
		s.res.ExcusedRestart++
		return
	case t == nil && s.inRestartLocked(start, end) && code != codes.DeadlineExceeded:
		s.res.ExcusedRestart++
		return
	case t != nil && t.life != nil:
		why = fmt.Sprintf("conn %v on a %s server", p.LocalAddr, kindNames[t.life.kind])
	case t != nil:
		why = fmt.Sprintf("conn %v", p.LocalAddr)
	default:
		why = "no conn"
	}
	s.res.Unexcused[code]++
	if len(s.res.UnexcusedSamples) < 5 {
		s.res.UnexcusedSamples = append(s.res.UnexcusedSamples, fmt.Sprintf("at %.1fs after %v, %s: %v",
			start.Sub(s.start).Seconds(), end.Sub(start).Round(time.Millisecond), why, err))
	}
}

// stoppedUnder reports whether l's stop explains the failure of an RPC
// that ran from start to end on one of its conns: the stop began before
// the RPC failed, and the RPC did not hold GracefulStop up until Stop cut
// it short (a fault-free RPC in flight for the whole graceful period was
// hanging). soak.mu must be held.
func stoppedUnder(l *life, start, end time.Time) bool {
	if l.stopping.IsZero() || end.Before(l.stopping) {
		return false
	}
	return l.forced.IsZero() || !start.Before(l.stopping) || end.Before(l.forced)
}

// inRestartLocked reports whether [start, end] meets a restart window.
// s.mu must be held.
func (s *soak) inRestartLocked(start, end time.Time) bool {
	for _, l := range s.lives {
		if l.stopping.IsZero() {
			continue
		}
		to := l.next.Add(restartGrace)
		if l.next.IsZero() {
			to = end // not serving again yet
		}
		if !start.After(to) && !end.Before(l.stopping) {
			return true
		}
	}
	return false
}

// unary does one echo RPC and checks the reply; it reports whether the
// RPC succeeded.
func (s *soak) unary(ctx context.Context, ch *channel, id, seq uint64) bool {
	rctx, cancel := s.rpcContext(ctx, ch, s.cfg.RPCTimeout)
	defer cancel()
	atomic.AddInt64(&s.res.RPCs, 1)
	var p peer.Peer
	start := time.Now()
	out, err := ch.ec.Unary(rctx, s.payload(id, seq), grpc.Peer(&p))
	if err != nil {
		s.fail(ctx, ch, &p, start, err)
		return false
	}
	switch got, ok := check(out, id); {
	case !ok:
		atomic.AddInt64(&s.res.Corrupt, 1)
	case got != seq:
		atomic.AddInt64(&s.res.Lost, 1)
	default:
		atomic.AddInt64(&s.res.Messages, 1)
	}
	return true
}

// stream sends StreamMsgs messages with consecutive sequence numbers from
// first on one bidi stream and checks the echoes: in order, each once,
// intact, and all of them if the stream ends cleanly.
func (s *soak) stream(ctx context.Context, ch *channel, id, first uint64) bool {
	rctx, cancel := s.rpcContext(ctx, ch, 2*s.cfg.RPCTimeout)
	defer cancel()
	atomic.AddInt64(&s.res.RPCs, 1)
	var p peer.Peer // not grpc.Peer: grpc-go may fill that on the sending goroutine
	start := time.Now()
	st, err := ch.ec.Stream(rctx)
	if err != nil {
		s.fail(ctx, ch, &p, start, err)
		return false
	}
	if sp, ok := peer.FromContext(st.Context()); ok {
		p = *sp
	}
	sendErr := make(chan error, 1)
	go func() {
		for i := range uint64(s.cfg.StreamMsgs) {
			if err := st.Send(s.payload(id, first+i)); err != nil {
				sendErr <- err
				return
			}
		}
		sendErr <- st.CloseSend()
	}()
	next := first
	for {
		b, err := st.Recv()
		if err == io.EOF {
			if serr := <-sendErr; serr == nil && next != first+uint64(s.cfg.StreamMsgs) {
				// The stream ended cleanly without every echo.
				atomic.AddInt64(&s.res.Lost, int64(first+uint64(s.cfg.StreamMsgs)-next))
			}
			return true
		}
		if err != nil {
			cancel()
			<-sendErr
			s.fail(ctx, ch, &p, start, err)
			return false
		}
		got, ok := check(b, id)
		switch {
		case !ok:
			atomic.AddInt64(&s.res.Corrupt, 1)
		case got < next:
			atomic.AddInt64(&s.res.Duplicated, 1)
		case got > next:
			atomic.AddInt64(&s.res.Lost, int64(got-next))
			next = got + 1
		default:
			atomic.AddInt64(&s.res.Messages, 1)
			next++
		}
	}
}

func addCounts(a, b testutil.FaultCounts) testutil.FaultCounts {
	return testutil.FaultCounts{
		Latency: a.Latency + b.Latency, Bandwidth: a.Bandwidth + b.Bandwidth, Stall: a.Stall + b.Stall,
		Reset: a.Reset + b.Reset, HalfOpen: a.HalfOpen + b.HalfOpen, SwallowedBytes: a.SwallowedBytes + b.SwallowedBytes,
	}
}

func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

func heapInuse() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}
