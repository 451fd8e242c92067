package grpcopt

import "net"

// WithResolver returns c with r looking up host names for Dial, so that a
// test can dial a name without sending a DNS query.
func WithResolver(c Config, r *net.Resolver) Config {
	c.resolver = r
	return c
}
