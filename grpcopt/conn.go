package grpcopt

import (
	"net"

	"google.golang.org/grpc/mem"

	"github.com/hubio/hubio/transport"
)

// Conn is a hub conn as grpc-go sees it: a *transport.Conn that also offers
// grpc-go's non-pinning read path, ReadOnReady, so that an idle connection
// holds no read buffer (grpc-go gives that path otherwise only to
// *net.TCPConn and the other standard socket types).
type Conn struct {
	*transport.Conn
}

// ReadOnReady waits for data without holding a buffer, then reads up to
// bufSize bytes into a buffer from pool. It implements grpc-go's
// readyreader.Reader.
func (c *Conn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	return c.Conn.ReadPooled(bufSize, pool)
}

// NetConn returns the underlying hub conn.
func (c *Conn) NetConn() net.Conn { return c.Conn }
