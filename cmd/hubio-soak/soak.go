package main

import (
	"context"
	"encoding/binary"
	"fmt"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"runtime"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
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
	return p
}

func (r *result) print(w io.Writer) {
	fmt.Fprintf(w, "ran %v: %d connections, %d server restarts\n", r.Elapsed.Round(time.Millisecond), r.Conns, r.Restarts)
	fmt.Fprintf(w, "RPCs: %d done, %d failed; messages verified: %d\n", r.RPCs, r.RPCErrors, r.Messages)
	fmt.Fprintf(w, "lost: %d, duplicated: %d, corrupted: %d\n", r.Lost, r.Duplicated, r.Corrupt)
	var cs []codes.Code
	for c := range r.Codes {
		cs = append(cs, c)
	}
	sort.Slice(cs, func(i, j int) bool { return cs[i] < cs[j] })
	fmt.Fprint(w, "errors by status code:")
	if len(cs) == 0 {
		fmt.Fprint(w, " none")
	}
	for _, c := range cs {
		fmt.Fprintf(w, " %v=%d", c, r.Codes[c])
	}
	fmt.Fprintln(w)
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
	hub    *poller.Hub
	addr   string
	dialer *testutil.FaultDialer
	res    result
	mu     sync.Mutex // guards res.Codes and rnd
	rnd    *rand.Rand
	lis    *testutil.FaultListener // current server's; under mu
	server *grpc.Server            // current server; under mu

	serverFaults testutil.FaultCounts // of servers already stopped; under mu
}

// run soaks for cfg.Duration and returns what it saw. Progress goes to
// progress once a second.
func run(cfg config, progress io.Writer) (*result, error) {
	if cfg.Std {
		cfg.NoWrap = true
	}
	s := &soak{cfg: cfg, rnd: rand.New(rand.NewPCG(uint64(cfg.Seed), 0))}
	s.res.Codes = map[codes.Code]int64{}
	s.res.FDs[0], s.res.Goroutines[0], s.res.HeapInuse[0] = openFDs(), runtime.NumGoroutine(), heapInuse()
	start := time.Now()

	hub, err := poller.New()
	if err != nil {
		return nil, err
	}
	s.hub = hub
	if err := s.startServer("127.0.0.1:0"); err != nil {
		hub.Close()
		return nil, err
	}
	s.dialer = testutil.NewFaultDialer(hub, testutil.Faults{})
	s.dialer.OnDial(s.injectFaults)

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
					time.Since(start).Seconds(), atomic.LoadInt64(&s.res.RPCs), atomic.LoadInt64(&s.res.RPCErrors),
					atomic.LoadInt64(&s.res.Conns), atomic.LoadInt64(&s.res.Lost),
					atomic.LoadInt64(&s.res.Duplicated), atomic.LoadInt64(&s.res.Corrupt))
			}
		}
	}()
	wg.Wait()
	fmt.Fprintln(progress)

	s.mu.Lock()
	s.server.Stop()
	s.serverFaults = addCounts(s.serverFaults, s.lis.Counts())
	s.mu.Unlock()
	s.res.ClientFaults = s.dialer.Counts()
	s.res.ServerFault = s.serverFaults
	hub.Close()
	s.res.Elapsed = time.Since(start)

	// Everything is closed: fds and goroutines must come back.
	settle := time.Now().Add(10 * time.Second)
	for time.Now().Before(settle) && (openFDs() > s.res.FDs[0] || runtime.NumGoroutine() > s.res.Goroutines[0]) {
		time.Sleep(50 * time.Millisecond)
	}
	runtime.GC()
	s.res.FDs[1], s.res.Goroutines[1], s.res.HeapInuse[1] = openFDs(), runtime.NumGoroutine(), heapInuse()
	return &s.res, nil
}

// startServer starts an echo server on the hub at addr, behind a fault
// listener. Conns are born on the hub (grpcopt.Listen), so no ServerOption
// is needed to move them.
func (s *soak) startServer(addr string) error {
	var l net.Listener
	var err error
	// The previous server's port may linger briefly; retry for a while.
	for deadline := time.Now().Add(5 * time.Second); ; {
		if s.cfg.Std {
			l, err = net.Listen("tcp", addr)
		} else {
			l, err = grpcopt.Listen(s.hub, "tcp", addr)
		}
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		return err
	}
	fl := testutil.NewFaultListener(s.hub, l, testutil.Faults{})
	fl.OnAccept(s.injectFaults)
	srv := grpc.NewServer(grpc.ConnectionTimeout(5 * time.Second))
	testutil.RegisterEchoServer(srv, nil)
	if s.cfg.NoWrap {
		go srv.Serve(l)
	} else {
		go srv.Serve(fl)
	}
	s.mu.Lock()
	s.lis, s.server = fl, srv
	s.addr = l.Addr().String()
	s.mu.Unlock()
	return nil
}

// restarter stops the server gracefully (forcefully after 2 s) and starts
// a new one on the same address, every cfg.Restart.
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
		srv, fl, addr := s.server, s.lis, s.addr
		s.mu.Unlock()
		done := make(chan struct{})
		go func() { srv.GracefulStop(); close(done) }()
		select {
		case <-done:
		case <-time.After(2 * time.Second):
			srv.Stop()
			<-done
		}
		s.mu.Lock()
		s.serverFaults = addCounts(s.serverFaults, fl.Counts())
		s.mu.Unlock()
		if err := s.startServer(addr); err != nil {
			fmt.Fprintln(os.Stderr, "hubio-soak: restart:", err)
			return
		}
		atomic.AddInt64(&s.res.Restarts, 1)
	}
}

// injectFaults gives a new conn (either side) a random fault, scheduled on
// the hub's timers where it happens later in the conn's life.
func (s *soak) injectFaults(c *testutil.FaultConn) {
	s.mu.Lock()
	p := s.rnd.Float64()
	kind := s.rnd.IntN(5)
	after := time.Duration(s.rnd.IntN(100)) * time.Millisecond
	latency := time.Duration(1+s.rnd.IntN(20)) * time.Millisecond
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

// client churns connections until ctx ends: dial, RPCs and a stream, close.
func (s *soak) client(ctx context.Context, id uint64) {
	var seq uint64
	for ctx.Err() == nil {
		s.mu.Lock()
		addr := s.addr
		s.mu.Unlock()
		dial := s.dialer.DialOption()
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
		ec := testutil.NewEchoClient(cc)
		ok := true
		for i := 0; i < s.cfg.RPCsPerConn && ok && ctx.Err() == nil; i++ {
			seq++
			ok = s.unary(ctx, ec, id, seq)
		}
		if ok && ctx.Err() == nil {
			seq += uint64(s.cfg.StreamMsgs)
			ok = s.stream(ctx, ec, id, seq-uint64(s.cfg.StreamMsgs)+1)
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

// fail counts a failed RPC, unless it failed because the run ended.
func (s *soak) fail(ctx context.Context, err error) {
	if ctx.Err() != nil {
		return
	}
	atomic.AddInt64(&s.res.RPCErrors, 1)
	s.mu.Lock()
	s.res.Codes[status.Code(err)]++
	s.mu.Unlock()
}

// unary does one echo RPC and checks the reply; it reports whether the
// RPC succeeded.
func (s *soak) unary(ctx context.Context, ec *testutil.EchoClient, id, seq uint64) bool {
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	atomic.AddInt64(&s.res.RPCs, 1)
	out, err := ec.Unary(rctx, s.payload(id, seq))
	if err != nil {
		s.fail(ctx, err)
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
func (s *soak) stream(ctx context.Context, ec *testutil.EchoClient, id, first uint64) bool {
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	atomic.AddInt64(&s.res.RPCs, 1)
	st, err := ec.Stream(rctx)
	if err != nil {
		s.fail(ctx, err)
		return false
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
			s.fail(ctx, err)
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
