package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"runtime"
	"runtime/pprof"
	"runtime/trace"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/connectivity"

	"github.com/hubio/hubio/testutil"
)

// Phases of a measurement, in order. Callers run in every phase but
// record latencies and count RPCs only while measuring.
const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseStop
)

// caller is one concurrent client loop. Its fields belong to its goroutine
// until done is closed.
type caller struct {
	lat  hist          // latencies of RPCs that completed while measuring
	rpcs uint64        // RPCs that completed while measuring
	err  error         // why it stopped early, if it did
	done chan struct{} // closed when its goroutine has stopped
}

// measureRPC runs one RPC job in this process: an echo server and j.Conns
// client conns on j.Transport, j.Conc callers sharing them round robin,
// j.Warmup unmeasured then j.Duration measured. With j.Setup "server" or
// "client", this process holds only that side on j.Transport, and a peer
// process (peerMain) holds the other on package net; the peer's CPU time
// comes back in the result beside this process's.
func measureRPC(j job) (result, error) {
	if j.Conc < 1 || j.Conns < 1 {
		return result{}, fmt.Errorf("bad job: %d callers, %d conns", j.Conc, j.Conns)
	}
	on, err := setupSides(j.Setup)
	if err != nil {
		return result{}, err
	}
	ep, err := newEndpoints(j.Transport, on)
	if err != nil {
		return result{}, err
	}
	defer ep.close()
	var pr *peer // the other side's process, if any
	if on&sideServer != 0 {
		srv := grpc.NewServer(ep.serverOpts...)
		testutil.RegisterEchoServer(srv, nil)
		go srv.Serve(ep.lis)
		defer srv.Stop()
	} else {
		// The peer serves; this process's clients dial it.
		if pr, err = startPeer(peerJob(j, roleServer, "")); err != nil {
			return result{}, err
		}
		defer pr.stop()
		ep.addr = pr.addr
	}

	var clients []*testutil.EchoClient // none: the peer calls
	if on&sideClient != 0 {
		if clients, err = dialClients(ep, j.Conns); err != nil {
			return result{}, err
		}
	} else {
		if pr, err = startPeer(peerJob(j, roleClient, ep.addr)); err != nil {
			return result{}, err
		}
		defer pr.stop()
	}
	return measureWindow(j, ep, clients, pr)
}

// dialClients opens n client conns to ep's server with ep's dial options
// and waits until all are connected, so that the warm-up is spent on RPCs
// and not on handshakes. The conns close when the process ends.
func dialClients(ep *endpoints, n int) ([]*testutil.EchoClient, error) {
	clients := make([]*testutil.EchoClient, n)
	ccs := make([]*grpc.ClientConn, n)
	for i := range clients {
		cc, err := grpc.NewClient(ep.target(), ep.dialOpts...)
		if err != nil {
			return nil, err
		}
		cc.Connect()
		ccs[i], clients[i] = cc, testutil.NewEchoClient(cc)
	}
	ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
	defer cancel()
	for i, cc := range ccs {
		for s := cc.GetState(); s != connectivity.Ready; s = cc.GetState() {
			if !cc.WaitForStateChange(ctx, s) {
				return nil, fmt.Errorf("client conn %d of %d not ready in %v (%v)", i, n, connectTimeout, s)
			}
		}
	}
	return clients, nil
}

// connectTimeout bounds how long dialClients waits for its conns.
const connectTimeout = time.Minute

// measureWindow runs j's callers on clients (none: the peer pr runs them),
// warms up and measures one window, telling pr (if any) when the window
// starts and ends. ep's hubs are counted.
func measureWindow(j job, ep *endpoints, clients []*testutil.EchoClient, pr *peer) (result, error) {
	var prof *os.File // the CPU profile of the measured time, if asked for
	var err error
	if j.CPUProfile != "" {
		if prof, err = os.Create(j.CPUProfile); err != nil {
			return result{}, err
		}
		defer prof.Close() // on early returns; closed and checked below
	}
	var tr *os.File // the execution trace of the measured time, if asked for
	if j.Trace != "" {
		if tr, err = os.Create(j.Trace); err != nil {
			return result{}, err
		}
		defer tr.Close() // on early returns; closed and checked below
	}

	// The sampler counts OS threads from before the callers start until
	// the measurement ends.
	samplerCtx, stopSampler := context.WithCancel(context.Background())
	peak := make(chan int, 1)
	go func() { peak <- sampleThreads(samplerCtx, 5*time.Millisecond) }()

	var phase atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	callers := startCallers(ctx, j, clients, &phase)
	var wg sync.WaitGroup
	wg.Go(func() {
		for _, c := range callers {
			<-c.done
		}
	})

	time.Sleep(j.Warmup)
	// abort stops the callers and the sampler when a profile or trace
	// cannot start.
	abort := func(err error) (result, error) {
		stopSampler()
		cancel()
		wg.Wait()
		return result{}, err
	}
	if prof != nil {
		if err := pprof.StartCPUProfile(prof); err != nil {
			return abort(fmt.Errorf("cpu profile: %w", err))
		}
	}
	if tr != nil {
		if err := trace.Start(tr); err != nil {
			if prof != nil {
				pprof.StopCPUProfile()
			}
			return abort(fmt.Errorf("trace: %w", err))
		}
	}
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	hub0, each0 := ep.hubStats(), ep.hubCounts()
	if pr != nil {
		if err := pr.send(peerMeasure); err != nil {
			return abort(err)
		}
	}
	cpu0 := cpuTime()
	start := time.Now()
	phase.Store(phaseMeasure)
	time.Sleep(j.Duration)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	cpu1 := cpuTime()
	var perr error
	if pr != nil {
		perr = pr.send(peerStop)
	}
	hub1, each1 := ep.hubStats(), ep.hubCounts()
	runtime.ReadMemStats(&after)
	if prof != nil {
		pprof.StopCPUProfile()
	}
	if tr != nil {
		trace.Stop()
	}
	stopSampler()
	var pres result
	if pr != nil && perr == nil {
		// The peer's callers stop on its own clock; its server stays up
		// until pr.stop, after this process's callers have stopped.
		pres, perr = pr.result()
	}
	cancel()
	wg.Wait()
	if perr != nil {
		return result{}, perr
	}
	if prof != nil {
		if err := prof.Close(); err != nil {
			return result{}, fmt.Errorf("cpu profile: %w", err)
		}
	}
	if tr != nil {
		if err := tr.Close(); err != nil {
			return result{}, fmt.Errorf("trace: %w", err)
		}
	}

	r := result{
		Elapsed:     elapsed,
		Mallocs:     after.Mallocs - before.Mallocs,
		CPU:         cpu1 - cpu0,
		PeakThreads: <-peak,
		HubEvents:   hub1.Events - hub0.Events,
		HubPolls:    hub1.Iterations - hub0.Iterations,
		HubEach:     hubCountsSince(each0, each1),
		PeerCPU:     pres.CPU,
	}
	if len(callers) == 0 { // the peer called
		r.RPCs, r.P50, r.P99, r.P999 = pres.RPCs, pres.P50, pres.P99, pres.P999
		return r, nil
	}
	r.RPCs, r.P50, r.P99, r.P999, err = tally(callers)
	return r, err
}

// startCallers starts j.Conc callers sharing clients round robin (none
// without clients). Each closes its done channel when it stops.
func startCallers(ctx context.Context, j job, clients []*testutil.EchoClient, phase *atomic.Int32) []*caller {
	if len(clients) == 0 {
		return nil
	}
	callers := make([]*caller, j.Conc)
	for i := range callers {
		c := &caller{done: make(chan struct{})}
		callers[i] = c
		cli := clients[i%len(clients)]
		go func() {
			defer close(c.done)
			if j.Mode == modeStream {
				c.stream(ctx, cli, j.Payload, phase)
			} else {
				c.unary(ctx, cli, j.Payload, phase)
			}
		}()
	}
	return callers
}

// tally sums the callers' RPCs and latencies, once they have stopped; the
// first caller error is returned.
func tally(callers []*caller) (rpcs uint64, p50, p99, p999 time.Duration, err error) {
	var lat hist
	for _, c := range callers {
		if c.err != nil {
			return 0, 0, 0, 0, c.err
		}
		lat.merge(&c.lat)
		rpcs += c.rpcs
	}
	if rpcs == 0 {
		return 0, 0, 0, 0, errors.New("no RPC completed while measuring")
	}
	return rpcs, lat.quantile(0.50), lat.quantile(0.99), lat.quantile(0.999), nil
}

// unary calls Unary until the phase is phaseStop.
func (c *caller) unary(ctx context.Context, cli *testutil.EchoClient, size int, phase *atomic.Int32) {
	payload := make([]byte, size)
	for {
		t0 := time.Now()
		_, err := cli.Unary(ctx, payload)
		if c.record(phase.Load(), t0, err, "unary") {
			return
		}
	}
}

// record accounts one call that started at t0 and ended with err, in phase
// p: counted and timed while measuring, an error kept unless stopping. It
// reports whether the caller must stop.
func (c *caller) record(p int32, t0 time.Time, err error, kind string) (stop bool) {
	if p == phaseStop {
		return true
	}
	if err != nil {
		c.err = fmt.Errorf("%s: %w", kind, err)
		return true
	}
	if p == phaseMeasure {
		c.lat.add(time.Since(t0))
		c.rpcs++
	}
	return false
}

// stream opens one bidirectional stream and sends a message and waits for
// its echo, one at a time, until the phase is phaseStop. Each round trip
// counts as one RPC.
func (c *caller) stream(ctx context.Context, cli *testutil.EchoClient, size int, phase *atomic.Int32) {
	s, err := cli.Stream(ctx)
	if err != nil {
		c.err = fmt.Errorf("stream: %w", err)
		return
	}
	payload := make([]byte, size)
	for {
		t0 := time.Now()
		err := s.Send(payload)
		if err == nil {
			_, err = s.Recv()
		}
		p := phase.Load()
		if p == phaseStop {
			s.CloseSend()
			return
		}
		if c.record(p, t0, err, "stream") {
			return
		}
	}
}

// sampleThreads returns the largest OS thread count of the process seen
// every interval until ctx is done.
func sampleThreads(ctx context.Context, interval time.Duration) int {
	var buf statusBuf
	peak := 0
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		if st, err := readProcStatus(&buf); err == nil {
			peak = max(peak, st.threads)
		}
		select {
		case <-ctx.Done():
			return peak
		case <-t.C:
		}
	}
}
