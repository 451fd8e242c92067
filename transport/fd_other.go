//go:build !linux

package transport

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hubio/hubio/poller"
)

// errUnsupported is returned by every operation where hubs are unsupported;
// poller.New fails first, so these are reached only through a failed hub.
var errUnsupported = fmt.Errorf("transport: hub sockets need Linux: %w", errors.ErrUnsupported)

// netFD is empty where hub sockets are unsupported.
type netFD struct {
	stats connCounters
	adm   admSlot
}

const (
	shutRD, shutWR, solSocket, ipprotoTCP = 0, 1, 0, 0
	tcpNoDelay, soKeepAlive, soRcvBuf     = 0, 0, 0
	soSndBuf                              = 0
)

func newFD(*poller.Hub, int) (*netFD, error) { return nil, errUnsupported }
func dupFD(syscall.Conn) (int, error)        { return -1, errUnsupported }
func (*netFD) Close() error                  { return errUnsupported }
func (*netFD) Read([]byte) (int, error)      { return 0, errUnsupported }
func (*netFD) readPooled(int, BufferPool) (*[]byte, int, error) {
	return nil, 0, errUnsupported
}
func (*netFD) Write([]byte) (int, error) { return 0, errUnsupported }
func (*netFD) writeBuffers(*net.Buffers) (int64, error) {
	return 0, errUnsupported
}
func (*netFD) shutdown(int) error                           { return errUnsupported }
func (*netFD) setDeadline(time.Time, bool, bool) error      { return errUnsupported }
func (*netFD) readDeadline() time.Time                      { return time.Time{} }
func (*netFD) control(func(int) error) error                { return errUnsupported }
func (*netFD) rawRead(func(uintptr) bool) error             { return errUnsupported }
func (*netFD) rawWrite(func(uintptr) bool) error            { return errUnsupported }
func (*netFD) sockopt(int, int, int) error                  { return errUnsupported }
func (*netFD) setLinger(int) error                          { return errUnsupported }
func (*netFD) multipathTCP() (bool, error)                  { return false, errUnsupported }
func (*netFD) setKeepAlivePeriod(time.Duration) error       { return errUnsupported }
func (*netFD) setKeepAliveConfig(net.KeepAliveConfig) error { return errUnsupported }
func (*netFD) hub() *poller.Hub                             { return nil }
func (*netFD) localAddr(bool) net.Addr                      { return nil }
func (*netFD) remoteAddr(bool) net.Addr                     { return nil }
func (*netFD) acceptConn(func() *poller.Hub, bool, *atomic.Pointer[listenerGate]) (*netFD, net.Addr, net.Addr, error) {
	return nil, nil, nil, errUnsupported
}
func dialFD(context.Context, *poller.Hub, string, net.Addr, net.Addr, keepAliveSettings, bool) (*netFD, error) {
	return nil, errUnsupported
}

func registerFD(*poller.Hub, int, bool) (*netFD, error) { return nil, errUnsupported }
