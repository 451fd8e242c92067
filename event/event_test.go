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
	if e.WaitTimeout(0) {
		t.Fatal("WaitTimeout(0) on an unset Event returned true")
	}
	e.Set()
	e.Set() // idempotent
	if !e.IsSet() || !e.WaitTimeout(0) {
		t.Fatal("Set did not set")
	}
	if err := e.Wait(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.Reset()
	if e.IsSet() {
		t.Fatal("Reset did not clear")
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

func TestWaitTimeoutWaitsAtLeastItsDuration(t *testing.T) {
	var e event.Event
	start := time.Now()
	if e.WaitTimeout(20 * time.Millisecond) {
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
	if !e.WaitTimeout(10 * time.Second) {
		t.Fatal("waiter not woken by a Set from a locked OS thread")
	}
}

// TestMillionAlternations plays ping-pong between two goroutines through two
// Events, one million times: a lost wakeup would hang it.
func TestMillionAlternations(t *testing.T) {
	n := 1_000_000
	if testing.Short() {
		n = 10_000
	}
	var ping, pong event.Event
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	done := make(chan error, 1)
	go func() {
		for range n {
			if err := ping.Wait(ctx); err != nil {
				done <- err
				return
			}
			ping.Reset()
			pong.Set()
		}
		done <- nil
	}()
	for i := range n {
		ping.Set()
		if err := pong.Wait(ctx); err != nil {
			t.Fatalf("alternation %d: %v (lost wakeup)", i, err)
		}
		pong.Reset()
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func BenchmarkSetWait(b *testing.B) {
	var ping, pong event.Event
	stop := make(chan struct{})
	go func() {
		for {
			ping.Wait(context.Background())
			ping.Reset()
			select {
			case <-stop:
				pong.Set()
				return
			default:
			}
			pong.Set()
		}
	}()
	b.ReportAllocs()
	for b.Loop() {
		ping.Set()
		pong.Wait(context.Background())
		pong.Reset()
	}
	close(stop)
	ping.Set()
	pong.Wait(context.Background())
}
