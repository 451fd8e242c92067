//go:build !linux

package hubtest

import (
	"net"
	"testing"
)

// MPTCPPair skips the test: hubio's Multipath TCP support is Linux's.
func MPTCPPair(t testing.TB) (dialed, accepted *net.TCPConn) {
	t.Helper()
	t.Skip("MPTCP tests run on Linux only")
	return nil, nil
}
