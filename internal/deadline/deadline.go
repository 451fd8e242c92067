// Package deadline holds what hubio's packages share about deadlines: a
// deadline long past, and a way to read the deadline set on a hub conn.
package deadline

import (
	"net"
	"time"
)

// Passed is a deadline long past: setting it on a conn makes its blocked
// and future calls fail at once with os.ErrDeadlineExceeded, which is how
// transport aborts a connect and grpcopt keeps grpc-go's connection
// timeout (package net uses the same trick, as aLongTimeAgo).
var Passed = time.Unix(1, 0)

// ReadOf returns the read deadline set on c and true when c is a hub conn
// (a *transport.Conn) or wraps one (transport.Beneath), the zero time and
// false for any other conn. Package
// transport sets it once, in its init, and nothing changes it after: it is
// how grpcopt learns the connection timeout grpc-go set on a conn whose
// hub has closed (the deadline is still kept there, but no wait on that
// hub can report it). Where transport is not linked in, it is nil.
var ReadOf func(c net.Conn) (time.Time, bool)
