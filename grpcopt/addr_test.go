//go:build linux

package grpcopt_test

import (
	"net"
	"testing"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
)

// realAddrConn reports the client address a front end told the listener
// (a PROXY-protocol header it consumed, say): it overrides RemoteAddr only.
type realAddrConn struct{ net.Conn }

var realClient = &net.TCPAddr{IP: net.IPv4(127, 9, 9, 9), Port: 4242}

func (c *realAddrConn) RemoteAddr() net.Addr { return realClient }

// TestBypassedWrapperKeepsItsAddresses: a wrapper whose socket is moved onto
// the hub still gives grpc-go its own RemoteAddr (what peer.FromContext and
// per-client policies see), not the socket's.
func TestBypassedWrapperKeepsItsAddresses(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	_, s := stdPair(t)
	before := grpcopt.ReadServerStats()
	conn, _, err := grpcopt.Config{Hub: h}.Credentials(nil).ServerHandshake(&realAddrConn{s})
	if err != nil {
		s.Close()
		t.Fatalf("ServerHandshake: %v", err)
	}
	defer conn.Close()
	if after := grpcopt.ReadServerStats(); after.Unwrapped == before.Unwrapped {
		t.Fatalf("the wrapper was not bypassed: %+v", after)
	}
	if got := conn.RemoteAddr(); got.String() != realClient.String() {
		t.Fatalf("RemoteAddr %v, want the wrapper's %v", got, realClient)
	}
	if got, want := conn.LocalAddr().String(), s.LocalAddr().String(); got != want {
		t.Fatalf("LocalAddr %v, want %v", got, want)
	}
}
