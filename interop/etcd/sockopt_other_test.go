//go:build !linux

package etcd_test

import "time"

// acceptedUserTimeouts cannot read sockets here.
func acceptedUserTimeouts(addr string) ([]time.Duration, int, bool) { return nil, 0, false }
