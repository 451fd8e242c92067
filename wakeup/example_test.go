package wakeup_test

import (
	"fmt"

	"github.com/hubio/hubio/wakeup"
)

// A poller registers Fd for readability; any goroutine calls Signal; the
// poller calls Drain once woken and then looks for work.
func Example() {
	w, err := wakeup.New()
	if err != nil {
		fmt.Println(err)
		return
	}
	defer w.Close()
	w.Signal()
	w.Signal() // coalesced: no second write
	w.Drain()
	s := w.Stats()
	fmt.Println(s.Signals, "signals,", s.Writes, "write")
	// Output: 2 signals, 1 write
}
