//go:build linux

package poller_test

import (
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

// BenchmarkHubSaturation measures the most readiness events per second one
// hub delivers. Each of many socket pairs has two goroutines (not the hub's)
// playing ping-pong with one byte: each writes into its end, then waits
// through the hub until its end is readable and reads the answer. Every
// read that finds no data parks its goroutine until the hub delivers the
// readiness event. With enough pairs and cores the hub goroutine becomes the
// bottleneck: its busy fraction nears 1 and events/s stops growing with
// GOMAXPROCS. One op is one round trip of one pair (up to two events).
//
// Metrics: events/s (delivered by the hub, from its Stats), hub-busy (the
// fraction of wall time the hub loop spent working; a lower bound of its CPU
// share, as the runtime's park and wake around each pass are not counted),
// and events/poll (events per epoll_wait: how much each wake is shared).
//
//	go test -run '^$' -bench HubSaturation -benchtime 2s -cpu 2,4,8,16 ./poller
func BenchmarkHubSaturation(b *testing.B) {
	for _, pairs := range []int{64, 256, 1024} {
		b.Run(fmt.Sprintf("pairs=%d", pairs), func(b *testing.B) {
			h := hubtest.NewHub(b)
			// The loop's busy time, as telemetry's utilization reads it.
			h.SetObserver(nopObserver{}, 0)
			busy := func() time.Duration { d, _ := h.LoopTime(); return d }
			type end struct {
				fd  int
				reg *poller.Registration
			}
			ends := make([][2]end, pairs)
			for i := range ends {
				fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
				if err != nil {
					b.Fatal(err)
				}
				b.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
				for j, fd := range fds {
					reg, err := h.Register(fd)
					if err != nil {
						b.Fatal(err)
					}
					b.Cleanup(reg.Deregister)
					ends[i][j] = end{fd: fd, reg: reg}
				}
			}
			var failed atomic.Value
			fail := func(err error) bool { failed.CompareAndSwap(nil, err); return false }
			// readOne waits through the hub for one byte; false at EOF
			// (the other side is done) or on an error.
			readOne := func(e end) bool {
				var buf [1]byte
				for {
					if err := e.reg.Prepare(poller.Read); err != nil {
						return fail(err)
					}
					n, err := unix.Read(e.fd, buf[:])
					switch {
					case err == nil:
						return n == 1
					case err == unix.EAGAIN:
						if err := e.reg.Wait(poller.Read); err != nil {
							return fail(err)
						}
					case err != unix.EINTR:
						return fail(err)
					}
				}
			}
			writeOne := func(e end) bool {
				if _, err := unix.Write(e.fd, []byte{1}); err != nil {
					return fail(err)
				}
				return true
			}
			// Let the hub harvest the writable edges of the new registrations
			// before counting.
			within(b, 5*time.Second, scheduled(b, h), "a callback")
			var left atomic.Int64
			left.Store(int64(b.N))
			s0, busy0 := h.Stats(), busy()
			b.ResetTimer()
			start := time.Now()
			var wg sync.WaitGroup
			for _, e := range ends {
				wg.Go(func() { // the server side: echo until EOF
					for readOne(e[1]) && writeOne(e[1]) {
					}
				})
				wg.Go(func() { // the client side: b.N round trips among all pairs
					for left.Add(-1) >= 0 && writeOne(e[0]) && readOne(e[0]) {
					}
					unix.Shutdown(e[0].fd, unix.SHUT_WR)
				})
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			if err := failed.Load(); err != nil {
				b.Fatal(err)
			}
			s1, busy1 := h.Stats(), busy()
			events := float64(s1.Events - s0.Events)
			b.ReportMetric(events/elapsed.Seconds(), "events/s")
			b.ReportMetric(float64(busy1-busy0)/float64(elapsed), "hub-busy")
			if polls := s1.Iterations - s0.Iterations; polls > 0 {
				b.ReportMetric(events/float64(polls), "events/poll")
			}
		})
	}
}

// nopObserver turns on a hub's loop-time accounting and records nothing.
type nopObserver struct{}

func (nopObserver) LoopDelay(time.Duration) {}
func (nopObserver) Iteration(int)           {}
func (nopObserver) QueueWait(time.Duration) {}
func (nopObserver) HandOff(time.Duration)   {}
