//go:build linux

package grpcopt

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/transport"
)

func setUserTimeout(c *transport.Conn, d time.Duration) error {
	return c.SetSockoptInt(unix.IPPROTO_TCP, unix.TCP_USER_TIMEOUT, int(d/time.Millisecond))
}
