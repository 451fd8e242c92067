//go:build !linux

package transport

// tcpInfo is unsupported where hub sockets are.
func tcpInfo(int) (TCPInfo, error) { return TCPInfo{}, errUnsupported }

func (fd *netFD) observeClose() {}
