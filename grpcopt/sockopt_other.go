//go:build !linux

package grpcopt

import (
	"time"

	"github.com/hubio/hubio/transport"
)

// setUserTimeout is a no-op where TCP_USER_TIMEOUT does not exist.
func setUserTimeout(*transport.Conn, time.Duration) error { return nil }
