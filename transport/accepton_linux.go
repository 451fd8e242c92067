//go:build linux

package transport

import (
	"net"

	"github.com/hubio/hubio/poller"
)

// acceptOn accepts one connection on the listener's hub and registers it
// with the hub pick returns then, with package net's TCP defaults
// (acceptConn with the hub chosen by the caller).
func (fd *netFD) acceptOn(pick func() *poller.Hub, isUnix bool) (*netFD, net.Addr, net.Addr, error) {
	s, rsa, err := fd.accept()
	if err != nil {
		return nil, nil, nil, err
	}
	nfd, err := newFD(pick(), s)
	if err != nil {
		return nil, nil, nil, err
	}
	if !isUnix {
		// Best effort, as package net: a socket option that cannot be set
		// must not fail Accept (a server would stop serving).
		nfd.setTCPDefaults(defaultKeepAlive)
	}
	return nfd, nfd.localAddr(isUnix), fromSockaddr(rsa, isUnix), nil
}
