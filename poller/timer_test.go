//go:build linux

package poller_test

import (
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

func TestAfterFuncNeverFiresEarlyAndStopCancels(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		type fired struct{ at, start time.Time }
		ch := make(chan fired, 8)
		for _, d := range []time.Duration{time.Millisecond, 10 * time.Millisecond, 30 * time.Millisecond, 0} {
			start := time.Now()
			h.AfterFunc(d, func() { ch <- fired{time.Now(), start} })
			f := within(t, 5*time.Second, ch, "timer")
			if el := f.at.Sub(f.start); el < d {
				t.Fatalf("timer for %v fired after %v", d, el)
			}
		}
		cancelled := make(chan struct{}, 1)
		stop := h.AfterFunc(20*time.Millisecond, func() { cancelled <- struct{}{} })
		if !stop() {
			t.Fatal("stop of a pending timer returned false")
		}
		if stop() {
			t.Fatal("second stop returned true")
		}
		later := make(chan struct{})
		h.AfterFunc(60*time.Millisecond, func() { close(later) })
		within(t, 5*time.Second, later, "later timer")
		select {
		case <-cancelled:
			t.Fatal("stopped timer fired")
		default:
		}
		// A stop after the timer fired reports false.
		zero := make(chan struct{})
		stop = h.AfterFunc(0, func() { close(zero) })
		within(t, 5*time.Second, zero, "zero timer")
		if stop() {
			t.Fatal("stop after firing returned true")
		}
	})
}

// TestAfterFuncCenturiesAwayStaysPending: a duration that overflows the
// hub's clock saturates instead of firing at once.
func TestAfterFuncCenturiesAwayStaysPending(t *testing.T) {
	h := hubtest.NewHub(t)
	fired := make(chan struct{}, 1)
	stop := h.AfterFunc(time.Duration(1<<63-1), func() { fired <- struct{}{} })
	later := make(chan struct{})
	h.AfterFunc(20*time.Millisecond, func() { close(later) })
	within(t, 5*time.Second, later, "near timer")
	select {
	case <-fired:
		t.Fatal("a timer centuries away fired")
	default:
	}
	if !stop() {
		t.Fatal("the far timer is not pending")
	}
}
