//go:build linux

package transport

import (
	"sync/atomic"
	"syscall"
)

// CountReads makes every read(2) of a conn's Read and ReadPooled add one
// to n until the test ends. Call it before the conns it counts start
// reading, and never from a parallel test: the hook is global.
func CountReads(t interface{ Cleanup(func()) }, n *atomic.Int64) {
	sysRead = func(fd int, p []byte) (int, error) {
		n.Add(1)
		return syscall.Read(fd, p)
	}
	t.Cleanup(func() { sysRead = syscall.Read })
}

// Exceptional reports c's poller.Registration.Exceptional: the hub has
// seen a hang-up, an error or urgent data on it.
func Exceptional(c *Conn) bool { return c.fd.reg.Exceptional() }
