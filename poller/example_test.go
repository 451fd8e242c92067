//go:build linux

package poller_test

import (
	"fmt"
	"time"

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
