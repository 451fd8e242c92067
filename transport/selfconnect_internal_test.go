//go:build linux

package transport

import (
	"net"
	"testing"

	"github.com/hubio/hubio/poller"
)

// TestSelfConnectIsRecognised forces TCP simultaneous open (a socket bound
// to a port dials that same port): the conn is connected to itself, and
// selfConnected — which makes a dial from an ephemeral port retry — says so.
func TestSelfConnectIsRecognised(t *testing.T) {
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	// A free port: listen, note it, close.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().(*net.TCPAddr)
	l.Close()
	d := Dialer{Hub: h, LocalAddr: addr}
	c, err := d.DialHub(t.Context(), "tcp", addr.String())
	if err != nil {
		t.Skipf("simultaneous open not possible here: %v", err)
	}
	defer c.Close()
	if !selfConnected(c) {
		t.Fatalf("conn %v -> %v not recognised as connected to itself", c.LocalAddr(), c.RemoteAddr())
	}
	other, err := (&Dialer{Hub: h}).DialHub(t.Context(), "tcp", addr.String())
	if err == nil {
		defer other.Close()
		if selfConnected(other) {
			t.Fatal("a dial from an ephemeral port returned a conn connected to itself")
		}
	}
}
