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
// until the WaitGroup it runs under is done.
type caller struct {
	lat  hist   // latencies of RPCs that completed while measuring
	rpcs uint64 // RPCs that completed while measuring
	err  error  // why it stopped early, if it did
}

// measureRPC runs one RPC job in this process: an echo server and j.Conns
// client conns on j.Transport, j.Conc callers sharing them round robin,
// j.Warmup unmeasured then j.Duration measured.
func measureRPC(j job) (result, error) {
	if j.Conc < 1 || j.Conns < 1 {
		return result{}, fmt.Errorf("bad job: %d callers, %d conns", j.Conc, j.Conns)
	}
	ep, err := newEndpoints(j.Transport)
	if err != nil {
		return result{}, err
	}
	defer ep.close()
	srv := grpc.NewServer(ep.serverOpts...)
	testutil.RegisterEchoServer(srv, nil)
	go srv.Serve(ep.lis)
	defer srv.Stop()

	clients := make([]*testutil.EchoClient, j.Conns)
	for i := range clients {
		cc, err := grpc.NewClient(ep.target(), ep.dialOpts...)
		if err != nil {
			return result{}, err
		}
		defer cc.Close()
		clients[i] = testutil.NewEchoClient(cc)
	}

	var prof *os.File // the CPU profile of the measured time, if asked for
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
	callers := make([]*caller, j.Conc)
	var wg sync.WaitGroup
	for i := range callers {
		c := &caller{}
		callers[i] = c
		cli := clients[i%len(clients)]
		wg.Go(func() {
			if j.Mode == modeStream {
				c.stream(ctx, cli, j.Payload, &phase)
			} else {
				c.unary(ctx, cli, j.Payload, &phase)
			}
		})
	}

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
	cpu0 := cpuTime()
	start := time.Now()
	phase.Store(phaseMeasure)
	time.Sleep(j.Duration)
	phase.Store(phaseStop)
	elapsed := time.Since(start)
	cpu1 := cpuTime()
	hub1, each1 := ep.hubStats(), ep.hubCounts()
	runtime.ReadMemStats(&after)
	if prof != nil {
		pprof.StopCPUProfile()
	}
	if tr != nil {
		trace.Stop()
	}
	stopSampler()
	cancel()
	wg.Wait()
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

	var lat hist
	r := result{
		Elapsed:     elapsed,
		Mallocs:     after.Mallocs - before.Mallocs,
		CPU:         cpu1 - cpu0,
		PeakThreads: <-peak,
		HubEvents:   hub1.Events - hub0.Events,
		HubPolls:    hub1.Iterations - hub0.Iterations,
		HubEach:     hubCountsSince(each0, each1),
	}
	for _, c := range callers {
		if c.err != nil {
			return result{}, c.err
		}
		lat.merge(&c.lat)
		r.RPCs += c.rpcs
	}
	if r.RPCs == 0 {
		return result{}, errors.New("no RPC completed while measuring")
	}
	r.P50, r.P99, r.P999 = lat.quantile(0.50), lat.quantile(0.99), lat.quantile(0.999)
	return r, nil
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
