package poller

import "golang.org/x/sys/unix"

// threadID returns the calling OS thread's id. Callers that compare it must
// be locked to their thread (see Hub.enterCallbacks).
func threadID() int64 { return int64(unix.Gettid()) }
