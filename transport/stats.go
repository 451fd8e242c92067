package transport

import (
	"sync/atomic"

	"github.com/hubio/hubio/poller"
)

// ConnStats are a conn's counters since it was created.
type ConnStats struct {
	BytesRead    uint64 // bytes returned by read syscalls
	BytesWritten uint64 // bytes accepted by write and writev syscalls
	Reads        uint64 // read syscalls that returned data
	Writes       uint64 // write and writev syscalls that wrote data
	ReadWaits    uint64 // times a read waited on the hub for readability
	WriteWaits   uint64 // times a write waited on the hub for buffer space
}

// Stats returns a snapshot of the conn's counters. Counting costs a few
// uncontended atomic additions per syscall and allocates nothing.
// (SyscallConn's Read and Write are not counted: their syscalls are the
// caller's.)
func (c *Conn) Stats() ConnStats { return c.fd.stats.snapshot() }

// IOObserver receives what a conn measures per syscall, once SetObserver
// has given it one; package telemetry implements it with OpenTelemetry
// instruments. Methods must return quickly and should not allocate.
type IOObserver interface {
	// ObserveRead reports the bytes one read syscall returned (n > 0). It
	// runs in the reading goroutine, serialised with other reads.
	ObserveRead(n int)
	// ObserveWrite reports the bytes one write or writev syscall wrote
	// (n > 0). It runs in the writing goroutine, serialised with other
	// writes.
	ObserveWrite(n int)
	// ObserveClose runs once, in the goroutine that closes the conn, as
	// soon as the conn is marked closed: before its waiters are woken and
	// before the socket is closed. info is the socket's last TCP_INFO, or
	// nil for a unix socket or when it could not be read.
	ObserveClose(info *TCPInfo)
}

// SetObserver makes the conn report to o (nil stops reporting). A later
// call replaces the observer. Without an observer a conn only counts
// (see Stats).
func (c *Conn) SetObserver(o IOObserver) {
	if o == nil {
		c.fd.stats.obs.Store(nil)
		return
	}
	c.fd.stats.obs.Store(&ioObserverBox{o})
}

// ioObserverBox lets an interface value live in an atomic.Pointer.
type ioObserverBox struct{ o IOObserver }

// connCounters are a netFD's counters.
//
// Ownership: the read counters are written by the goroutine holding the
// fd's read lock, the write counters by the one holding its write lock;
// Stats reads them from any goroutine, hence atomics (uncontended: one
// writer each). obs is stored by SetObserver and loaded per syscall.
type connCounters struct {
	obs                     atomic.Pointer[ioObserverBox]
	bytesRead, bytesWritten atomic.Uint64
	reads, writes           atomic.Uint64
	readWaits, writeWaits   atomic.Uint64
}

// read counts one read syscall that returned n > 0 bytes.
func (s *connCounters) read(n int) {
	s.reads.Add(1)
	s.bytesRead.Add(uint64(n))
	if b := s.obs.Load(); b != nil {
		b.o.ObserveRead(n)
	}
}

// wrote counts one write syscall that wrote n > 0 bytes.
func (s *connCounters) wrote(n int) {
	s.writes.Add(1)
	s.bytesWritten.Add(uint64(n))
	if b := s.obs.Load(); b != nil {
		b.o.ObserveWrite(n)
	}
}

// waiting counts one wait on the hub in direction m.
func (s *connCounters) waiting(m poller.Mode) {
	if m == poller.Read {
		s.readWaits.Add(1)
	} else {
		s.writeWaits.Add(1)
	}
}

// closing tells the observer, if any, that the conn is closing; info reads
// the last TCP_INFO and is called only when there is an observer.
func (s *connCounters) closing(info func() *TCPInfo) {
	if b := s.obs.Load(); b != nil {
		b.o.ObserveClose(info())
	}
}

func (s *connCounters) snapshot() ConnStats {
	return ConnStats{
		BytesRead:    s.bytesRead.Load(),
		BytesWritten: s.bytesWritten.Load(),
		Reads:        s.reads.Load(),
		Writes:       s.writes.Load(),
		ReadWaits:    s.readWaits.Load(),
		WriteWaits:   s.writeWaits.Load(),
	}
}
