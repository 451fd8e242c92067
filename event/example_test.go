package event_test

import (
	"context"
	"fmt"
	"runtime"

	"github.com/hubio/hubio/event"
)

// An OS-thread-locked goroutine (say, a foreign event loop) signals a Go
// goroutine through an Event.
func Example() {
	var ready event.Event
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		ready.Set()
	}()
	if err := ready.Wait(context.Background()); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("set:", ready.IsSet())
	// Output: set: true
}
