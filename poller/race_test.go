//go:build linux

package poller_test

import (
	"errors"
	"net"
	"sync"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

// TestCloseRacesRegistrations closes hubs while goroutines register,
// wait on and deregister fds: every Register either succeeds (and its
// waiter then returns net.ErrClosed) or fails with net.ErrClosed; nothing
// panics or hangs, and Registered ends at zero.
func TestCloseRacesRegistrations(t *testing.T) {
	rounds := 1000
	if testing.Short() {
		rounds = 30
	}
	for range rounds {
		h, err := poller.New()
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		errs := make(chan error, 64)
		for range 4 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range 8 {
					var p [2]int
					if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
						errs <- err
						return
					}
					reg, err := h.Register(p[0])
					if err == nil {
						werr := make(chan error, 1)
						go func() { werr <- reg.Wait(poller.Read) }()
						if h.Schedule(func() {}) != nil {
							// Closed: the waiter must come back.
							if err := <-werr; !errors.Is(err, net.ErrClosed) {
								errs <- err
							}
						} else {
							reg.Deregister()
							if err := <-werr; !errors.Is(err, net.ErrClosed) {
								errs <- err
							}
						}
					} else if !errors.Is(err, net.ErrClosed) {
						errs <- err
					}
					unix.Close(p[0])
					unix.Close(p[1])
				}
			}()
		}
		if err := h.Close(); err != nil {
			t.Fatal(err)
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		if r := h.Stats().Registered; r != 0 {
			t.Fatalf("Registered = %d after Close", r)
		}
	}
}
