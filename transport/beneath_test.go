package transport_test

import (
	"crypto/tls"
	"net"
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// netConnWrapper wraps a conn and says so through NetConn, as grpc-go's and
// hubio's wrappers do.
type netConnWrapper struct{ net.Conn }

func (w netConnWrapper) NetConn() net.Conn { return w.Conn }

func TestBeneathFindsTheHubConnUnderWrappers(t *testing.T) {
	h := hubtest.NewHub(t)
	c, _ := pipe(t, h, "tcp", true, true)
	hc := c.(*transport.Conn)
	for _, tc := range []struct {
		name string
		conn net.Conn
	}{
		{"the hub conn itself", hc},
		{"a wrapper with NetConn", netConnWrapper{hc}},
		{"TLS over a wrapper", tls.Client(netConnWrapper{hc}, &tls.Config{})},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got, ok := transport.Beneath[*transport.Conn](tc.conn); !ok || got != hc {
				t.Fatalf("Beneath = %v, %v; want the hub conn", got, ok)
			}
		})
	}
	std, peer := net.Pipe()
	defer std.Close()
	defer peer.Close()
	if _, ok := transport.Beneath[*transport.Conn](netConnWrapper{std}); ok {
		t.Fatal("Beneath found a hub conn under a package net conn")
	}
}
