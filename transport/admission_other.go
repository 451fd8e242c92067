//go:build !linux

package transport

import "github.com/hubio/hubio/poller"

// registration is nil where hub sockets are unsupported.
func (*netFD) registration() *poller.Registration { return nil }
