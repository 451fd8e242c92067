//go:build linux

package transport

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/poller"
)

// maxRW caps a single read or write, as internal/poll does.
const maxRW = 1 << 30

// netFD is a non-blocking socket registered with a hub.
//
// Ownership: sysfd, reg, done and cleanup are immutable after newFD. refs
// guards sysfd against reuse (see fdRefs). rmu serialises Read, Accept and
// RawRead; wmu serialises Write and RawWrite, so one goroutine at a time
// waits in each direction of reg and concurrent writes never interleave.
//
// References: an operation that takes rmu or wmu (Read, Write, Accept, the
// raw and timestamped I/O) holds no reference: the direction's lock stands
// for one. It checks the closed bit once it holds the lock (lockDir), and
// Close, after setting that bit and waking the waiters, takes and drops
// each lock before it drops its own reference, so the fd number is not
// closed while an operation holds either lock, and every later one sees
// the bit. A read or a write then makes two atomic operations (lock and
// unlock), where taking a reference as well made four; package net's
// fdMutex makes two too (one compare-and-swap to lock and reference, one
// to unlock). Every other use of sysfd (socket options, shutdown,
// deadlines, addresses, the error queue) takes a reference (incref).
//
// Lock order: rmu and wmu are taken after a reference if the operation
// holds one, and wmu after rmu where both are held: only Close and a paused
// Accept (while it waits in the listener's write direction, see accept)
// hold both. While one is held, the only calls out are the syscall,
// Registration.Prepare and Wait (which take no lock: Wait parks on the
// direction's hand-off word, poller/park.go) and, in readPooled, the caller's BufferPool.
// The hub goroutine and deadline timers never take them, so a conn's
// reader and writer never wait for each other. Close takes them only after
// waking every waiter through reg (Deregister), so it waits for a parked
// reader or writer only as long as it takes to return net.ErrClosed, as it
// waited for its reference before.
type netFD struct {
	sysfd int
	reg   *poller.Registration
	refs  fdRefs
	// done is closed by destroy, once sysfd has been closed.
	done chan struct{}
	// cleanup closes sysfd if the netFD becomes unreachable unclosed, as
	// package net's finalizer on its netFD does; destroy stops it.
	cleanup runtime.Cleanup
	// rmu and wmu are not padded apart from each other or from refs
	// (package net's fdMutex keeps both directions in one word): padding
	// each direction's lock and counters onto cache lines of their own
	// (384 bytes a conn) measured no gain (docs/performance.md, hand-off
	// ideas).
	rmu sync.Mutex
	wmu sync.Mutex
	// shortReadDrains and drained sit before stats, whose read counters
	// every read updates, so that checking them touches no other cache
	// line. shortReadDrains is immutable: the socket is TCP (not MPTCP, not a
	// unix socket, whose reads also stop short at a message carrying
	// fds), so a read(2) that returns fewer bytes than asked for has
	// emptied its receive queue (epoll(7): "you can be sure of having
	// exhausted the read I/O space").
	shortReadDrains bool
	// drained is set, under rmu, by a read that returned fewer bytes than
	// it asked for on such a socket, and taken by the next read
	// (prepareRead): instead of a read(2) that would only say EAGAIN, that
	// read waits for the hub's next read event first. No data is missed:
	// the read that drained the queue came after the direction's
	// readiness was last taken (by Prepare, or by a Wait), so any byte
	// that arrived since has an event that leaves Read readiness for the
	// next Wait. What a later event would not report again (a FIN, an error,
	// the data after an urgent mark) sets the registration's Exceptional
	// before its event is delivered, and drained is then ignored. Every
	// other use of the read direction (rawIO) clears it.
	drained bool
	// stats counts syscalls and bytes; see stats.go.
	stats connCounters
	// tstamps holds the write-timestamp state; see tstamp_linux.go.
	tstamps tstampSlot
	// adm holds an admitted conn's slot; see admission.go.
	adm admSlot
}

// newFD registers a non-blocking socket with h. On failure sysfd is closed.
func newFD(h *poller.Hub, sysfd int) (*netFD, error) { return registerFD(h, sysfd, false) }

// registerFD is newFD for a conn's socket or, with listener set, a listening
// socket's: the hub counts listeners apart from its conns (poller's
// Stats.Conns).
func registerFD(h *poller.Hub, sysfd int, listener bool) (*netFD, error) {
	var reg *poller.Registration
	var err error
	if listener {
		reg, err = h.RegisterListener(sysfd)
	} else {
		reg, err = h.Register(sysfd)
	}
	if err != nil {
		syscall.Close(sysfd)
		return nil, err
	}
	fd := &netFD{sysfd: sysfd, reg: reg, done: make(chan struct{})}
	if !listener {
		proto, err := syscall.GetsockoptInt(sysfd, syscall.SOL_SOCKET, syscall.SO_PROTOCOL)
		fd.shortReadDrains = err == nil && proto == syscall.IPPROTO_TCP
	}
	fd.cleanup = runtime.AddCleanup(fd, closeDropped, droppedFD{sysfd, reg})
	return fd, nil
}

// droppedFD is what closing an unreachable netFD takes. It must not point
// back to the netFD (a cleanup whose argument reaches its object never
// runs), and nothing the hub holds points to the netFD either: its
// registration table and timers hold the Registration, whose fields are
// the fd number, its generation, its state and its two waiter slots.
type droppedFD struct {
	sysfd int
	reg   *poller.Registration
}

// closeDropped deregisters and closes the socket of a netFD that was never
// closed. No operation can be in flight: each holds the netFD.
func closeDropped(d droppedFD) {
	d.reg.Deregister()
	syscall.Close(d.sysfd)
}

// decref ends an operation; the last one after Close closes the socket.
func (fd *netFD) decref() {
	if fd.refs.decref() {
		fd.destroy()
	}
}

func (fd *netFD) destroy() {
	fd.cleanup.Stop()
	syscall.Close(fd.sysfd)
	close(fd.done)
}

// Close marks the fd closed, wakes every waiter (they return net.ErrClosed),
// and returns once the socket itself is closed, when the last operation in
// flight has left.
func (fd *netFD) Close() error {
	if !fd.refs.markClosed() {
		return net.ErrClosed
	}
	fd.observeClose()
	fd.releaseSlot()
	fd.reg.Deregister() // wakes the waiters: they return net.ErrClosed
	// Readers and writers hold the direction's lock in place of a
	// reference: wait for the one in each direction to leave. Any later
	// one sees the closed bit under the lock (lockDir).
	fd.rmu.Lock()
	fd.rmu.Unlock()
	fd.wmu.Lock()
	fd.wmu.Unlock()
	fd.decref()
	<-fd.done
	return nil
}

// lockDir takes a direction's lock (rmu or wmu) for one operation, which
// then needs no reference (see netFD). It returns false, holding nothing,
// once the fd is closed.
func (fd *netFD) lockDir(mu *sync.Mutex) bool {
	mu.Lock()
	if fd.refs.closed() {
		mu.Unlock()
		return false
	}
	return true
}

// Read reads into p: the retry loop every operation shares. Try the
// syscall; on EAGAIN wait until the hub says the fd is ready, and retry;
// EINTR is retried in ignoringEINTRIO.
func (fd *netFD) Read(p []byte) (int, error) {
	if !fd.lockDir(&fd.rmu) {
		return 0, net.ErrClosed
	}
	defer fd.rmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if err := fd.prepareRead(); err != nil {
		return 0, err
	}
	if len(p) > maxRW {
		p = p[:maxRW]
	}
	for {
		n, err := ignoringEINTRIO(sysRead, fd.sysfd, p)
		if err == nil {
			if n > 0 {
				fd.stats.read(n)
				fd.drained = fd.shortReadDrains && n < len(p)
			}
			return n, eofError(n)
		}
		if err = fd.retryAfter(poller.Read, "read", err); err != nil {
			return 0, err
		}
	}
}

// sysRead is read(2) for Read and ReadPooled: a variable only so that
// tests can count those syscalls (export_drain_test.go).
var sysRead = syscall.Read

// prepareRead readies a read for its first read(2): Prepare(Read) or,
// after a read that drained the socket (see netFD.drained), a wait for the
// hub's next read event, which Wait takes (nil: read now). Either one
// reports a closed conn or a passed deadline first. rmu held.
func (fd *netFD) prepareRead() error {
	if fd.drained {
		fd.drained = false
		if !fd.reg.Exceptional() {
			fd.stats.waiting(poller.Read)
			return fd.reg.Wait(poller.Read)
		}
	}
	return fd.reg.Prepare(poller.Read)
}

// retryAfter is the retry loops' one decision after a failed syscall: it
// returns nil to retry once the hub says direction m is ready again (the
// syscall said EAGAIN), else the error to return: the wait's own, or err
// as an *os.SyscallError naming op.
func (fd *netFD) retryAfter(m poller.Mode, op string, err error) error {
	if err != syscall.EAGAIN {
		return os.NewSyscallError(op, err)
	}
	fd.stats.waiting(m)
	return fd.reg.Wait(m)
}

// ignoringEINTRIO is internal/poll's: it retries an I/O syscall that a
// signal interrupted before it transferred anything.
func ignoringEINTRIO[B any](fn func(fd int, b B) (int, error), fd int, b B) (int, error) {
	for {
		n, err := fn(fd, b)
		if err != syscall.EINTR {
			return n, err
		}
	}
}

// ignoringEINTR is ignoringEINTRIO for a syscall of another shape.
func ignoringEINTR(fn func() error) error {
	for {
		if err := fn(); err != syscall.EINTR {
			return err
		}
	}
}

// eofError turns a read of 0 bytes on a stream into io.EOF.
func eofError(n int) error {
	if n == 0 {
		return io.EOF
	}
	return nil
}

// readPooled waits for readability holding no buffer, then takes one from
// pool only for the read syscall; a buffer is returned only with data.
func (fd *netFD) readPooled(size int, pool BufferPool) (*[]byte, int, error) {
	if size < 0 {
		return nil, 0, syscall.EINVAL
	}
	if !fd.lockDir(&fd.rmu) {
		return nil, 0, net.ErrClosed
	}
	defer fd.rmu.Unlock()
	if size == 0 {
		return nil, 0, nil
	}
	if err := fd.prepareRead(); err != nil {
		return nil, 0, err
	}
	for {
		b := pool.Get(min(size, maxRW))
		n, err := ignoringEINTRIO(sysRead, fd.sysfd, *b)
		if err == nil && n > 0 {
			fd.stats.read(n)
			fd.drained = fd.shortReadDrains && n < len(*b)
			return b, n, nil
		}
		pool.Put(b)
		if err == nil {
			return nil, 0, io.EOF
		}
		if err = fd.retryAfter(poller.Read, "read", err); err != nil {
			return nil, 0, err
		}
	}
}

// Write writes all of p, waiting on the hub whenever the socket buffer is
// full.
func (fd *netFD) Write(p []byte) (int, error) {
	if !fd.lockDir(&fd.wmu) {
		return 0, net.ErrClosed
	}
	defer fd.wmu.Unlock()
	if len(p) == 0 {
		return 0, nil
	}
	if err := fd.reg.Prepare(poller.Write); err != nil {
		return 0, err
	}
	if ts := fd.tstamps.due(); ts != nil {
		return fd.writeSampled(ts, p)
	}
	return fd.writeAll(syscall.Write, p)
}

// writeAll is Write's retry loop, for a write syscall of write's shape
// (write(2), or sendmsg(2) with a control message for sampled writes):
// all of p is written, waiting on the hub while the socket buffer is full.
// Errors are named "write" either way. fd.wmu held, Prepare(Write) done.
func (fd *netFD) writeAll(write func(fd int, b []byte) (int, error), p []byte) (int, error) {
	var nn int
	for nn < len(p) {
		n, err := ignoringEINTRIO(write, fd.sysfd, p[nn:min(len(p), nn+maxRW)])
		if err == nil {
			if n == 0 {
				return nn, io.ErrUnexpectedEOF
			}
			fd.stats.wrote(n)
			nn += n
			continue
		}
		if err = fd.retryAfter(poller.Write, "write", err); err != nil {
			return nn, err
		}
	}
	return nn, nil
}

// maxIovecs caps the buffers handed to one writev (IOV_MAX is 1024).
const maxIovecs = 1024

// writeBuffers writes every buffer with writev, in as few syscalls as the
// socket buffer allows. Written bytes are consumed from *v.
func (fd *netFD) writeBuffers(v *net.Buffers) (int64, error) {
	if !fd.lockDir(&fd.wmu) {
		return 0, net.ErrClosed
	}
	defer fd.wmu.Unlock()
	if err := fd.reg.Prepare(poller.Write); err != nil {
		return 0, err
	}
	var total int64
	for {
		consume(v, 0) // drop empty buffers: writev of nothing writes 0
		if len(*v) == 0 {
			return total, nil
		}
		n, err := ignoringEINTRIO(unix.Writev, fd.sysfd, [][]byte((*v)[:min(len(*v), maxIovecs)]))
		if err == nil {
			if n == 0 {
				return total, io.ErrUnexpectedEOF
			}
			fd.stats.wrote(n)
			total += int64(n)
			consume(v, n)
			continue
		}
		if err = fd.retryAfter(poller.Write, "writev", err); err != nil {
			return total, err
		}
	}
}

// consume drops the first n bytes of *v, and any empty buffers after them.
func consume(v *net.Buffers, n int) {
	for len(*v) > 0 {
		b := (*v)[0]
		if len(b) > n {
			(*v)[0] = b[n:]
			return
		}
		n -= len(b)
		(*v)[0] = nil
		*v = (*v)[1:]
	}
}

// accept waits for and returns one connection, non-blocking and
// close-on-exec. ECONNABORTED (the peer gave up before we accepted) is
// retried; EMFILE and ENFILE come back as a *os.SyscallError whose
// Temporary() is true. With an admission gate, a paused listener waits
// without accepting, a refused conn is reset and the loop goes on, and an
// admitted one comes with its slot (nil if it holds none).
func (fd *netFD) accept(gate *atomic.Pointer[listenerGate]) (int, syscall.Sockaddr, *slot, error) {
	if !fd.lockDir(&fd.rmu) {
		return -1, nil, nil, net.ErrClosed
	}
	defer fd.rmu.Unlock()
	if err := fd.reg.Prepare(poller.Read); err != nil {
		return -1, nil, nil, err
	}
	for {
		g := gate.Load()
		if g != nil {
			if h := acceptGateHook.Load(); h != nil {
				(*h)() // tests only: see export_admission_test.go
			}
			// A paused listener leaves conns in the backlog and waits in
			// the write direction, which a listening socket never makes
			// ready: arrivals do not wake it, the resume (Wake), Close and
			// the deadline (SetDeadline sets both directions) do. Prepare
			// comes before the checks, so a resume between the two leaves
			// its token for Wait. The gate is loaded again after Prepare:
			// SetAdmission swaps the gate, then wakes this direction, so a
			// swap that Prepare's drop of that wake hides is seen here
			// (the old gate, detached, would never wake this Accept), and
			// a later one leaves its wake for Wait. wmu is held meanwhile
			// (rmu, then wmu, as Close takes them), so that a raw write on
			// the listener (SyscallConn) never waits in that direction at
			// the same time: one waiter per direction.
			fd.wmu.Lock()
			err := fd.reg.Prepare(poller.Write)
			swapped := gate.Load() != g
			paused := err == nil && !swapped && g.paused()
			if paused {
				err = fd.reg.Wait(poller.Write)
			}
			fd.wmu.Unlock()
			if err != nil {
				return -1, nil, nil, err
			}
			if paused || swapped {
				continue
			}
		}
		var s int
		var rsa syscall.Sockaddr
		err := ignoringEINTR(func() (err error) {
			s, rsa, err = syscall.Accept4(fd.sysfd, syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC)
			return err
		})
		if err == nil {
			if g == nil {
				return s, rsa, nil, nil
			}
			if sl, r := g.a.admit(sockaddrAddr(rsa)); r == 0 {
				return s, rsa, sl, nil
			}
			refuseFD(s)
			// Yield the P between refusals. A storm can leave thousands
			// of conns to refuse in the backlog, and each refusal is a
			// few short syscalls that do not give the P up: without the
			// yield this loop held its P through the whole storm (until
			// the runtime preempted it, 10 ms at a time), and the conns
			// already served, the hub included, waited behind it.
			runtime.Gosched()
			continue
		}
		if err == syscall.ECONNABORTED {
			continue // the peer gave up before we accepted
		}
		if err = fd.retryAfter(poller.Read, "accept4", err); err != nil {
			return -1, nil, nil, err
		}
	}
}

// shutdown half-closes the socket (syscall.SHUT_RD or SHUT_WR).
func (fd *netFD) shutdown(how int) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	return os.NewSyscallError("shutdown", syscall.Shutdown(fd.sysfd, how))
}

// setDeadline sets the deadline of one or both directions.
func (fd *netFD) setDeadline(t time.Time, read, write bool) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	if read {
		fd.reg.SetDeadline(poller.Read, t)
	}
	if write {
		fd.reg.SetDeadline(poller.Write, t)
	}
	return nil
}

// readDeadline returns the read deadline set on the conn, as its
// registration keeps it (also once closed, or once the hub has closed).
func (fd *netFD) readDeadline() time.Time { return fd.reg.Deadline(poller.Read) }

// control runs f on the fd number while it is guaranteed to stay open.
func (fd *netFD) control(f func(fd int) error) error {
	if !fd.refs.incref() {
		return net.ErrClosed
	}
	defer fd.decref()
	return f(fd.sysfd)
}

// rawRead calls f until it reports done, waiting for readability on the
// hub in between.
func (fd *netFD) rawRead(f func(uintptr) bool) error { return fd.rawIO(&fd.rmu, poller.Read, f) }

// rawWrite is rawRead for the write direction.
func (fd *netFD) rawWrite(f func(uintptr) bool) error { return fd.rawIO(&fd.wmu, poller.Write, f) }

// rawIO runs f under the direction's lock until it reports done.
func (fd *netFD) rawIO(mu *sync.Mutex, m poller.Mode, f func(uintptr) bool) error {
	if !fd.lockDir(mu) {
		return net.ErrClosed
	}
	defer mu.Unlock()
	if m == poller.Read {
		// f's reads may leave data whose readiness Prepare drops: the
		// next Read must try read(2) first (netFD.drained).
		fd.drained = false
	}
	if err := fd.reg.Prepare(m); err != nil {
		return err
	}
	for !f(uintptr(fd.sysfd)) {
		if err := fd.reg.Wait(m); err != nil {
			return err
		}
	}
	return nil
}

func (fd *netFD) hub() *poller.Hub { return fd.reg.Hub() }

// acceptConn accepts one connection that gate admits and registers it with
// the hub pick returns once it is accepted, with package net's TCP
// defaults.
func (fd *netFD) acceptConn(pick func() *poller.Hub, isUnix bool, gate *atomic.Pointer[listenerGate]) (*netFD, net.Addr, net.Addr, error) {
	s, rsa, sl, err := fd.accept(gate)
	if err != nil {
		return nil, nil, nil, err
	}
	nfd, err := newFD(pick(), s)
	if err != nil {
		if sl != nil {
			sl.release()
		}
		return nil, nil, nil, err
	}
	nfd.adopt(sl)
	if !isUnix {
		// As a net.ListenConfig with no keepalive settings does.
		nfd.setTCPDefaults(0, net.KeepAliveConfig{})
	}
	return nfd, nfd.localAddr(isUnix), fromSockaddr(rsa, isUnix), nil
}

// Shutdown directions, named for the platform-independent code.
const (
	shutRD = syscall.SHUT_RD
	shutWR = syscall.SHUT_WR
)
