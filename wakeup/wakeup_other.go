//go:build !unix

package wakeup

import (
	"errors"
	"fmt"
)

// fds is empty where wakeup is unsupported; New never returns a Wakeup.
type fds struct{}

func newFds() (fds, error) {
	return fds{}, fmt.Errorf("wakeup: no eventfd or pipe on this platform: %w", errors.ErrUnsupported)
}

func (fds) readFd() int  { return -1 }
func (fds) write()       {}
func (fds) drain()       {}
func (fds) close() error { return nil }
