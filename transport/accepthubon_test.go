//go:build linux

package transport_test

import (
	"net"
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

func TestAcceptHubOnRegistersTheConnWithTheGivenHub(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			lh, ch := hubtest.NewHub(t), hubtest.NewHub(t)
			ln := listen(t, lh, network)
			d, err := net.Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { d.Close() })
			c, err := ln.AcceptHubOn(func() *poller.Hub { return ch })
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			if c.Hub() != ch {
				t.Fatal("the accepted conn is not on the hub given to AcceptHubOn")
			}
			if got := lh.Stats().Registered; got != 1 {
				t.Fatalf("listener's hub has %d fds registered, want 1 (the listener only)", got)
			}
			if got := ch.Stats().Registered; got != 1 {
				t.Fatalf("conn's hub has %d fds registered, want 1", got)
			}
			exchange(t, d, c)
		})
	}
}

func TestAcceptHubOnAClosedHubFailsThatConnOnly(t *testing.T) {
	lh, dead := hubtest.NewHub(t), hubtest.NewHub(t)
	dead.Close()
	ln := listen(t, lh, "tcp")
	for range 2 {
		d, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { d.Close() })
	}
	_, err := ln.AcceptHubOn(func() *poller.Hub { return dead })
	checkOpErr(t, err, "accept", net.ErrClosed)
	c, err := ln.AcceptHubOn(nil) // the listener goes on, on its own hub
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if c.Hub() != lh {
		t.Fatal("AcceptHubOn(nil) did not use the listener's hub")
	}
}
