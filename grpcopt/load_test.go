package grpcopt_test

import (
	"context"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// TestThousandConcurrentStreamsOnOneConn opens 1,000 echo streams on one
// client conn to a server on a hub, has every one complete a round trip
// before any is closed (so all 1,000 are open at once on the server), then
// ends them all; every stream must succeed and the client must dial once.
func TestThousandConcurrentStreamsOnOneConn(t *testing.T) {
	const streams = 1000
	for _, ss := range []serverSetup{optionServer, listenOptServer} {
		t.Run("on "+ss.name, func(t *testing.T) {
			serverHub, clientHub := hubtest.NewHubUnchecked(t), hubtest.NewHubUnchecked(t)
			_, addr := startEcho(t, ss, serverHub, grpc.MaxConcurrentStreams(streams+100))
			var dials atomic.Int64
			c := testutil.NewEchoClient(dial(t, addr, nil, nil, countingDialer(clientHub, &dials)))
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			t.Cleanup(cancel)

			start := time.Now()
			var opened, done sync.WaitGroup
			allOpen := make(chan struct{})
			errs := make(chan error, streams)
			for i := range streams {
				opened.Add(1)
				done.Add(1)
				go func() {
					defer done.Done()
					err := func() error {
						atBarrier := false
						defer func() {
							if !atBarrier {
								opened.Done()
							}
						}()
						st, err := c.Stream(ctx)
						if err != nil {
							return fmt.Errorf("stream %d: open: %w", i, err)
						}
						msg := fmt.Appendf(nil, "stream %d", i)
						if err := st.Send(msg); err != nil {
							return fmt.Errorf("stream %d: Send: %w", i, err)
						}
						if got, err := st.Recv(); err != nil || string(got) != string(msg) {
							return fmt.Errorf("stream %d: Recv = %q, %v; want %q", i, got, err, msg)
						}
						atBarrier = true
						opened.Done()
						<-allOpen
						if err := st.CloseSend(); err != nil {
							return fmt.Errorf("stream %d: CloseSend: %w", i, err)
						}
						if _, err := st.Recv(); err != io.EOF {
							return fmt.Errorf("stream %d: Recv after CloseSend = %v, want io.EOF", i, err)
						}
						return nil
					}()
					if err != nil {
						errs <- err
					}
				}()
			}
			opened.Wait()
			close(allOpen)
			done.Wait()
			close(errs)
			n := 0
			for err := range errs {
				if n++; n <= 5 {
					t.Error(err)
				}
			}
			if n > 0 {
				t.Fatalf("%d of %d streams failed", n, streams)
			}
			if d := dials.Load(); d != 1 {
				t.Errorf("client dialed %d times, want 1", d)
			}
			t.Logf("%d concurrent streams in %v", streams, time.Since(start))
		})
	}
}

// TestManyConcurrentUnaryRPCs runs 64 goroutines of unary echo RPCs over
// one client conn to a server on a hub: 2,000 each, 300 under the race
// detector (which makes each RPC several times dearer), 200 with -short.
// Every RPC must succeed and echo its own payload. Each RPC has its own
// deadline, generous for one echo on a loaded machine (a lost wakeup
// leaves an RPC waiting until it), rather than the whole run a budget that
// only a fast enough machine meets.
func TestManyConcurrentUnaryRPCs(t *testing.T) {
	const goroutines = 64
	const rpcTimeout = 30 * time.Second
	perGoroutine := 2000
	switch {
	case testing.Short():
		perGoroutine = 200
	case raceEnabled:
		perGoroutine = 300
	}
	serverHub, clientHub := hubtest.NewHubUnchecked(t), hubtest.NewHubUnchecked(t)
	_, addr := startEcho(t, listenOptServer, serverHub)
	var dials atomic.Int64
	c := testutil.NewEchoClient(dial(t, addr, nil, nil, countingDialer(clientHub, &dials)))

	start := time.Now()
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perGoroutine {
				msg := fmt.Appendf(nil, "%d/%d", g, i)
				ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
				got, err := c.Unary(ctx, msg)
				cancel()
				if err == nil && string(got) != string(msg) {
					err = fmt.Errorf("reply %q, want %q", got, msg)
				}
				if err != nil {
					if failed.Add(1) <= 5 {
						t.Errorf("goroutine %d, RPC %d: %v", g, i, err)
					}
					return // one failure is enough; the others would wait too
				}
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	total := goroutines * perGoroutine
	if n := failed.Load(); n > 0 {
		t.Fatalf("%d of %d goroutines had an RPC fail", n, goroutines)
	}
	if d := dials.Load(); d != 1 {
		t.Errorf("client dialed %d times, want 1", d)
	}
	t.Logf("%d×%d unary RPCs in %v (%.0f RPC/s)", goroutines, perGoroutine, took, float64(total)/took.Seconds())
}
