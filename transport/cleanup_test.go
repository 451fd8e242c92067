//go:build linux

package transport_test

import (
	"net"
	"runtime"
	"testing"
	"time"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// TestDroppedConnsAreClosedByTheCollector: a conn or listener dropped
// unclosed is closed once garbage-collected, as package net's are: its fd
// is closed and its registration leaves the hub, which must not keep it
// reachable.
func TestDroppedConnsAreClosedByTheCollector(t *testing.T) {
	for _, tc := range []struct {
		name string
		drop func(t *testing.T, h *poller.Hub) // makes one thing and drops it
	}{
		{"a dialed conn", func(t *testing.T, h *poller.Hub) {
			ln := listen(t, h, "tcp")
			if _, err := (&transport.Dialer{Hub: h}).Dial("tcp", ln.Addr().String()); err != nil {
				t.Fatal(err)
			}
			s, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			s.Close()
			ln.Close()
		}},
		{"an accepted conn", func(t *testing.T, h *poller.Hub) {
			ln := listen(t, h, "unix")
			c, err := net.Dial("unix", ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := ln.Accept(); err != nil {
				t.Fatal(err)
			}
			ln.Close()
		}},
		{"a moved conn with a deadline set", func(t *testing.T, h *poller.Hub) {
			c1, c2 := pipe(t, h, "tcp", false, false)
			defer c1.Close()
			defer c2.Close()
			c, err := transport.NewConn(h, c1)
			if err != nil {
				t.Fatal(err)
			}
			if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil { // a timer on the hub
				t.Fatal(err)
			}
		}},
		{"a listener", func(t *testing.T, h *poller.Hub) {
			if _, err := transport.Listen(h, "tcp", "127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name+" is closed", func(t *testing.T) {
			h := newHub(t)
			before := openFDs(t)
			tc.drop(t, h)
			waitFor(t, 10*time.Second, "the collector to close the dropped fd", func() bool {
				runtime.GC()
				return h.Stats().Registered == 0 && openFDs(t) <= before
			})
		})
	}
	t.Run("a conn in use is not closed", func(t *testing.T) {
		h := newHub(t)
		c1, c2 := pipe(t, h, "tcp", true, true)
		for range 3 {
			runtime.GC()
		}
		if _, err := c1.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := c2.Read(b); err != nil {
			t.Fatal(err)
		}
		if got := h.Stats().Registered; got != 2 {
			t.Fatalf("%d registrations, want 2", got)
		}
	})
}
