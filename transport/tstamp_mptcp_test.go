//go:build linux

package transport_test

import (
	"errors"
	"net"
	"os"
	"syscall"
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// TestWriteTimestampsRefusedOnMPTCP: an MPTCP conn takes SO_TIMESTAMPING
// but delivers the timestamps on its subflows' error queues, where the hub
// never reads them; EnableWriteTimestamps refuses it with EOPNOTSUPP and
// leaves the conn working.
func TestWriteTimestampsRefusedOnMPTCP(t *testing.T) {
	h := hubtest.NewHub(t)
	dialed, acc := hubtest.MPTCPPair(t) // skips without MPTCP on loopback
	nc, err := transport.NewConn(h, dialed)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := nc.(*transport.Conn)
	err = c.EnableWriteTimestamps(1, &latencyRecorder{})
	var se *os.SyscallError
	var op *net.OpError
	if !errors.As(err, &op) || !errors.As(err, &se) || !errors.Is(err, syscall.EOPNOTSUPP) {
		t.Fatalf("EnableWriteTimestamps on an MPTCP conn: %v, want a *net.OpError around an *os.SyscallError wrapping EOPNOTSUPP", err)
	}
	if s := c.WriteTimestampStats(); s != (transport.WriteTimestampStats{}) {
		t.Errorf("refused conn's timestamp stats %+v, want zeros", s)
	}
	if _, err := c.Write([]byte("still works")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 11)
	if _, err := acc.Read(b); err != nil || string(b) != "still works" {
		t.Fatalf("read %q, %v", b, err)
	}
}
