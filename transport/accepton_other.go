//go:build !linux

package transport

import (
	"net"

	"github.com/hubio/hubio/poller"
)

func (*netFD) acceptOn(func() *poller.Hub, bool) (*netFD, net.Addr, net.Addr, error) {
	return nil, nil, nil, errUnsupported
}
