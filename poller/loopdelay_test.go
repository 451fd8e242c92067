//go:build linux

package poller_test

import (
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

func TestLoopDelayIsMeasuredWithoutAnObserver(t *testing.T) {
	h := hubtest.NewHub(t)
	if d := h.LoopDelay(); d != 0 {
		t.Fatalf("LoopDelay before any timer: %v", d)
	}
	got := make(chan time.Duration, 1)
	// A callback arms a timer due in 1ms, then holds the loop 20ms: the
	// timer runs at least 19ms late and sees that delay.
	h.Schedule(func() {
		h.AfterFunc(time.Millisecond, func() { got <- h.LoopDelay() })
		time.Sleep(20 * time.Millisecond) // the load: a loop held busy
	})
	if d := <-got; d < 19*time.Millisecond || d > 10*time.Second {
		t.Errorf("LoopDelay after a 20ms stall = %v, want at least 19ms", d)
	}
	later := make(chan time.Duration, 1)
	h.AfterFunc(time.Millisecond, func() { later <- h.LoopDelay() })
	if d := <-later; d >= 10*time.Millisecond {
		t.Logf("LoopDelay of an idle hub's timer = %v (a loaded machine)", d)
	}
}

func TestRegistrationWakeReleasesAWaiter(t *testing.T) {
	h := hubtest.NewHub(t)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(fds[0]); unix.Close(fds[1]) })
	r, err := h.Register(fds[0])
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Deregister)
	if err := r.Prepare(poller.Read); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- r.Wait(poller.Read) }()
	r.Wake(poller.Read)
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Wait after Wake: %v, want nil (look again)", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Wake did not release the waiter")
	}
}
