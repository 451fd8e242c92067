//go:build !linux

package poller

import (
	"errors"
	"fmt"
)

// poll is empty where hubs are unsupported; New never returns a Hub.
type poll struct{}

var errUnsupported = fmt.Errorf("poller: hubs need epoll (Linux): %w", errors.ErrUnsupported)

func (p *poll) init(*Hub, options) error { return errUnsupported }
func (p *poll) add(int, uint32) error    { return errUnsupported }
func (p *poll) del(int)                  {}
func (p *poll) close()                   {}

func (h *Hub) loop() {}

func (h *Hub) dispatchForTest(int32, uint32, uint32) {}
