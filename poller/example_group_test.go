//go:build linux

package poller_test

import (
	"fmt"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

// A group spreads new registrations across its hubs: each goes to the live
// hub with the fewest registered fds.
func ExampleGroup() {
	g, err := poller.NewGroup(2)
	if err != nil {
		fmt.Println(err)
		return
	}
	defer g.Close()
	for range 4 {
		var p [2]int
		if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
			fmt.Println(err)
			return
		}
		defer unix.Close(p[0])
		defer unix.Close(p[1])
		reg, err := g.Next().Register(p[0])
		if err != nil {
			fmt.Println(err)
			return
		}
		defer reg.Deregister()
	}
	st := g.Stats()
	fmt.Println("per hub:", st.Hubs[0].Registered, st.Hubs[1].Registered, "total:", st.Total.Registered)
	// Output: per hub: 2 2 total: 4
}
