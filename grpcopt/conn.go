package grpcopt

import (
	"net"
	"sync"

	"google.golang.org/grpc/mem"

	"github.com/hubio/hubio/transport"
)

// Conn is a hub conn as grpc-go sees it: a *transport.Conn that also offers
// grpc-go's non-pinning read path, ReadOnReady, so that an idle connection
// holds no read buffer (grpc-go gives that path otherwise only to
// *net.TCPConn and the other standard socket types).
type Conn struct {
	*transport.Conn

	// outer is the wrapper (a limiting listener's conn, say) whose socket
	// this conn took over, or nil. Reads and writes bypass it; Close
	// closes it, once, after the hub conn, so that what it does on Close
	// (releasing a slot) still happens. Set before the conn is shared.
	outer     net.Conn
	outerOnce sync.Once
}

// ReadOnReady waits for data without holding a buffer, then reads up to
// bufSize bytes into a buffer from pool. It implements grpc-go's
// readyreader.Reader.
func (c *Conn) ReadOnReady(bufSize int, pool mem.BufferPool) (*[]byte, int, error) {
	return c.Conn.ReadPooled(bufSize, pool)
}

// NetConn returns the underlying hub conn.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// Close closes the hub conn and then, once, the wrapper whose socket it
// took over (see ServerOption).
func (c *Conn) Close() error {
	err := c.Conn.Close()
	if c.outer != nil {
		c.outerOnce.Do(func() { c.outer.Close() })
	}
	return err
}
