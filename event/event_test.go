package event_test

import (
	"context"
	"errors"
	"runtime"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/hubio/hubio/event"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestZeroValueIsUnsetAndUsable(t *testing.T) {
	var e event.Event
	if e.IsSet() {
		t.Fatal("zero Event is set")
	}
	if e.WaitDeadline(time.Now()) {
		t.Fatal("WaitDeadline(now) on an unset Event returned true")
	}
	done := e.Done()
	e.Set()
	e.Set() // idempotent
	if !e.IsSet() || !e.WaitDeadline(time.Now()) {
		t.Fatal("Set did not set")
	}
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-done:
	default:
		t.Fatal("Done's channel from before Set is not closed")
	}
	if e.Done() != done {
		t.Fatal("Done returned another channel")
	}
}

// TestSetBeforeDoneClosesDone: an Event set before anyone asked for Done
// hands out a closed channel.
func TestSetBeforeDoneClosesDone(t *testing.T) {
	var e event.Event
	e.Set()
	select {
	case <-e.Done():
	default:
		t.Fatal("Done of a set Event is not closed")
	}
	if !e.WaitDeadline(time.Time{}) {
		t.Fatal("WaitDeadline with no deadline on a set Event returned false")
	}
}

func TestWaitReturnsContextErrorOnCancel(t *testing.T) {
	var e event.Event
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Wait(ctx) }()
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Wait = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after cancel")
	}
}

func TestWaitDeadlineWaitsUntilItsDeadline(t *testing.T) {
	var e event.Event
	start := time.Now()
	if e.WaitDeadline(start.Add(20 * time.Millisecond)) {
		t.Fatal("unset Event reported set")
	}
	if el := time.Since(start); el < 20*time.Millisecond {
		t.Fatalf("WaitTimeout returned after %v", el)
	}
}

func TestSetWakesEveryWaiter(t *testing.T) {
	var e event.Event
	const waiters = 64
	var wg sync.WaitGroup
	errs := make(chan error, waiters)
	for range waiters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- e.Wait(context.Background())
		}()
	}
	e.Set()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestSetFromLockedOSThread sets the Event from a goroutine locked to its own
// OS thread, as a foreign event loop or cgo callback would.
func TestSetFromLockedOSThread(t *testing.T) {
	var e event.Event
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		e.Set()
	}()
	if !e.WaitDeadline(time.Now().Add(10 * time.Second)) {
		t.Fatal("waiter not woken by a Set from a locked OS thread")
	}
}

// TestHundredThousandHandOffs plays ping-pong between two goroutines
// through a fresh pair of Events per round: a lost wakeup would hang it.
func TestHundredThousandHandOffs(t *testing.T) {
	n := 100_000
	if testing.Short() {
		n = 10_000
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	type round struct{ ping, pong event.Event }
	rounds := make(chan *round, 1)
	done := make(chan error, 1)
	go func() {
		for r := range rounds {
			if err := r.ping.Wait(ctx); err != nil {
				done <- err
				return
			}
			r.pong.Set()
		}
		done <- nil
	}()
	for i := range n {
		r := new(round)
		rounds <- r
		r.ping.Set()
		if err := r.pong.Wait(ctx); err != nil {
			t.Fatalf("round %d: %v (lost wakeup)", i, err)
		}
	}
	close(rounds)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

// BenchmarkSetWait measures one hand-off each way between two goroutines.
func BenchmarkSetWait(b *testing.B) {
	type round struct{ ping, pong event.Event }
	rounds := make(chan *round, 1)
	go func() {
		for r := range rounds {
			r.ping.Wait(context.Background())
			r.pong.Set()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		r := new(round)
		rounds <- r
		r.ping.Set()
		r.pong.Wait(context.Background())
	}
	close(rounds)
}
