//go:build !linux

package poller

import (
	"errors"
	"fmt"
	"os"
)

// poll is empty where hubs are unsupported: init fails, so New never
// returns a Hub and the loop never runs. It meets the contract stated in
// loop.go.
type poll struct{}

var errUnsupported = fmt.Errorf("poller: hubs need epoll (Linux): %w", errors.ErrUnsupported)

func (p *poll) init(int, options) error { return errUnsupported }
func (p *poll) add(int, uint32) error   { return errUnsupported }
func (p *poll) del(int)                 {}
func (p *poll) wait(int) (int, error)   { return 0, errUnsupported }
func (p *poll) event(int) pollEvent     { return pollEvent{} }
func (p *poll) file() *os.File          { return nil }
func (p *poll) close()                  {}

// threadID is never called where hubs do not run; 0 matches no thread.
func threadID() int64 { return 0 }
