//go:build linux

package poller_test

import (
	"fmt"
	"runtime"
	"time"

	"github.com/hubio/hubio/event"
	"github.com/hubio/hubio/poller"
)

// A hub runs callbacks and timers on its own goroutine, in order.
func Example() {
	h, err := poller.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	done := make(chan struct{})
	h.Schedule(func() { fmt.Println("first callback") })
	h.Schedule(func() { fmt.Println("second callback") })
	h.AfterFunc(10*time.Millisecond, func() {
		fmt.Println("timer, on the hub too")
		close(done)
	})
	<-done
	// Output:
	// first callback
	// second callback
	// timer, on the hub too
}

// Closing a hub wakes every goroutine waiting on its fds with an error that
// matches net.ErrClosed.
func ExampleHub_Close() {
	h, err := poller.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	h.Close()
	fmt.Println(h.Schedule(func() {}))
	fmt.Println(h.Close() != nil)
	// Output:
	// poller: hub closed: use of closed network connection
	// true
}

// An event loop's own thread (here a goroutine locked to its OS thread, as a
// framework's loop or a cgo callback runs) hands work to the hub and waits,
// with a deadline, for the completion that a hub callback sets.
func Example_lockedThreadWaitsForACompletion() {
	h, err := poller.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer h.Close()
	finished := make(chan struct{})
	go func() {
		defer close(finished)
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()

		var completed event.Event
		var result string
		h.AfterFunc(time.Millisecond, func() {
			result = "work done on the hub"
			completed.Set() // written before Set, read after the wait: no race
		})
		if !completed.WaitDeadline(time.Now().Add(10 * time.Second)) {
			fmt.Println("no completion before the deadline")
			return
		}
		fmt.Println(result)
	}()
	<-finished
	// Output: work done on the hub
}
