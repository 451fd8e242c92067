package transport_test

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// TestConnConformance runs golang.org/x/net/nettest.TestConn, the standard
// net.Conn conformance suite, over every pairing of hub and standard
// listener and dialer, over TCP and unix sockets.
func TestConnConformance(t *testing.T) {
	h := newHub(t)
	for _, network := range []string{"tcp", "unix"} {
		for _, side := range []struct {
			name               string
			hubListen, hubDial bool
		}{
			{"hub-listener/hub-dialer", true, true},
			{"hub-listener/std-dialer", true, false},
			{"std-listener/hub-dialer", false, true},
		} {
			t.Run(network+"/"+side.name, func(t *testing.T) {
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					return makePipe(t, h, network, side.hubListen, side.hubDial)
				})
			})
		}
	}
}

// makePipe returns two connected conns: c1 dialed, c2 accepted.
func makePipe(t *testing.T, h *poller.Hub, network string, hubListen, hubDial bool) (c1, c2 net.Conn, stop func(), err error) {
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	var ln net.Listener
	if hubListen {
		ln, err = transport.Listen(h, network, addr)
	} else {
		ln, err = net.Listen(network, addr)
	}
	if err != nil {
		return nil, nil, nil, err
	}
	defer ln.Close()
	type accepted struct {
		c   net.Conn
		err error
	}
	ch := make(chan accepted, 1)
	go func() {
		c, err := ln.Accept()
		ch <- accepted{c, err}
	}()
	if hubDial {
		d := transport.Dialer{Hub: h}
		c1, err = d.DialContext(context.Background(), network, ln.Addr().String())
	} else {
		c1, err = net.Dial(network, ln.Addr().String())
	}
	a := <-ch
	if err != nil || a.err != nil {
		if c1 != nil {
			c1.Close()
		}
		if a.c != nil {
			a.c.Close()
		}
		if err == nil {
			err = a.err
		}
		return nil, nil, nil, err
	}
	return c1, a.c, func() { c1.Close(); a.c.Close() }, nil
}

func newHub(t testing.TB, opts ...poller.Option) *poller.Hub {
	t.Helper()
	h, err := poller.New(opts...)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
