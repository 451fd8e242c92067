//go:build linux

package transport_test

import (
	"net"
	"testing"

	"golang.org/x/net/nettest"

	"github.com/hubio/hubio/internal/hubtest"
)

// TestConnConformance runs golang.org/x/net/nettest.TestConn, the standard
// net.Conn conformance suite, over every pairing of hub and standard
// listener and dialer, over TCP and unix sockets.
func TestConnConformance(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, network := range []string{"tcp", "unix"} {
		for _, p := range pairings {
			t.Run(network+" "+p.name, func(t *testing.T) {
				nettest.TestConn(t, func() (c1, c2 net.Conn, stop func(), err error) {
					return makePipe(t, h, network, p.hubListen, p.hubDial)
				})
			})
		}
	}
}
