// Package deadline holds the one deadline value hubio's packages share.
package deadline

import "time"

// Passed is a deadline long past: setting it on a conn makes its blocked
// and future calls fail at once with os.ErrDeadlineExceeded, which is how
// transport aborts a connect and grpcopt keeps grpc-go's connection
// timeout (package net uses the same trick, as aLongTimeAgo).
var Passed = time.Unix(1, 0)
