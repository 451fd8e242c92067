//go:build linux

package transport

import (
	"math/rand/v2"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"
	"weak"

	"golang.org/x/sys/unix"
)

// tsFlags are A80's socket-wide SO_TIMESTAMPING flags: software
// timestamps, keyed by byte offset (OPT_ID, counted from the first byte
// written after the setsockopt with OPT_ID_TCP), reported without the
// packet (OPT_TSONLY), with TCP statistics (OPT_STATS). They request no
// timestamp by themselves: only a sampled sendmsg's control message does.
const tsFlags = unix.SOF_TIMESTAMPING_SOFTWARE | unix.SOF_TIMESTAMPING_OPT_ID |
	unix.SOF_TIMESTAMPING_OPT_TSONLY | unix.SOF_TIMESTAMPING_OPT_STATS

// Per-sendmsg requests: the sampled chunk asks for SCHED and SENT, the
// rest of the write for ACKED; a write no longer than its bucket asks for
// all three at once.
const (
	tsSampled = unix.SOF_TIMESTAMPING_TX_SCHED | unix.SOF_TIMESTAMPING_TX_SOFTWARE
	tsAck     = unix.SOF_TIMESTAMPING_TX_ACK
)

// tsRing bounds the samples in flight per conn. At A80's period a conn has
// at most one in flight; at period 1 a writer faster than its round trip
// overwrites the oldest (counted as lost).
const tsRing = 8

// tsSample is one sampled write. A timestamp's OPT_ID key is the offset,
// counted from the first byte written after timestamping was turned on
// (mod 2³²), of the last byte that the sendmsg carrying the request
// copied. The writer records each chunk's keys before its first sendmsg,
// so that a timestamp can arrive before the call returns; SCHED and SENT
// may come from any sendmsg of the sampled chunk (see sendStamped).
type tsSample struct {
	seq                uint64 // 0: the slot is free
	size               int    // A80 bucket
	lo, key            uint32 // the sampled chunk's first and last byte
	ackKey             uint32 // of the ACK timestamp: the write's last byte
	keyOK, ackOK       bool   // the keys are set
	schedKey           uint32 // the key of sched
	sched, sent, acked int64  // unix nanoseconds; 0 until reported
}

// within reports whether key lies in [lo, hi], modulo 2³².
func within(key, lo, hi uint32) bool { return key-lo <= hi-lo }

// tstamper is a conn's write-timestamp state.
//
// Ownership: fd, obs, period and base are immutable once enabled;
// countdown, seq and cmsg belong to the writer (fd.wmu held). mu guards
// ring, oob, data and pfd, shared by the writer, which holds it to fill a
// slot (never across a sendmsg or a wait; only when the hub missed does it
// read the queue itself, with non-blocking syscalls, see unlock), and the
// hub goroutine, which only ever TryLocks it: the hub never waits. Counters are atomics, read by
// WriteTimestampStats.
type tstamper struct {
	fd        *netFD
	obs       WriteLatencyObserver
	period    int
	base      uint64 // fd.stats.bytesWritten when enabled: key 0 is the next byte
	countdown int    // unsampled writes left before the next sample
	seq       uint64
	cmsg      [32]byte // one SO_TIMESTAMPING control message (CmsgSpace(4) ≤ 32)

	mu   sync.Mutex
	ring [tsRing]tsSample
	oob  [512]byte // OPT_STATS makes a report a few hundred bytes
	data [1]byte
	pfd  [1]unix.PollFd

	// missed is set by the hub before it TryLocks mu; a writer that
	// unlocks mu and finds it set drains the queue in the hub's stead (the
	// hub's EPOLLERR edge is spent; see unlock).
	missed atomic.Bool

	sampled, recorded, lost, errEvents, errWakes atomic.Uint64
}

// tstampSlot is netFD's hook: nil until EnableWriteTimestamps.
type tstampSlot struct{ p atomic.Pointer[tstamper] }

// due returns the conn's tstamper if this Write is to be sampled: one
// atomic load and a nil test while timestamps are off. fd.wmu held.
func (s *tstampSlot) due() *tstamper {
	ts := s.p.Load()
	if ts == nil {
		return nil
	}
	if ts.countdown > 0 {
		ts.countdown--
		return nil
	}
	ts.countdown = ts.period - 1
	return ts
}

// setTimestamping sets A80's flags on socket s.
func setTimestamping(s int) error {
	err := unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMPING, tsFlags|unix.SOF_TIMESTAMPING_OPT_ID_TCP)
	if err == unix.EINVAL {
		// Kernels before 6.2 reject OPT_ID_TCP. Without it keys count from
		// snd_una instead of write_seq: the same while nothing written is
		// unacknowledged, as when a conn is instrumented before its first
		// write.
		err = unix.SetsockoptInt(s, unix.SOL_SOCKET, unix.SO_TIMESTAMPING, tsFlags)
	}
	return os.NewSyscallError("setsockopt", err)
}

func (fd *netFD) enableTimestamps(period int, o WriteLatencyObserver) error {
	if !fd.lockDir(&fd.wmu) {
		return net.ErrClosed
	}
	defer fd.wmu.Unlock()
	if fd.tstamps.p.Load() != nil {
		return errTimestampsOn
	}
	// An MPTCP socket accepts SO_TIMESTAMPING, but its timestamps go to
	// its subflows' error queues, which the hub never sees: every sample
	// would be lost. Refuse, as a kernel without timestamping would.
	if proto, _ := unix.GetsockoptInt(fd.sysfd, unix.SOL_SOCKET, unix.SO_PROTOCOL); proto == unix.IPPROTO_MPTCP {
		return os.NewSyscallError("setsockopt", unix.EOPNOTSUPP)
	}
	if err := setTimestamping(fd.sysfd); err != nil {
		return err
	}
	ts := &tstamper{
		fd:        fd,
		obs:       o,
		period:    period,
		base:      fd.stats.bytesWritten.Load(),
		countdown: rand.IntN(period),
	}
	ts.pfd[0].Fd = int32(fd.sysfd)
	fd.tstamps.p.Store(ts)
	// The handler lives in the hub's registration table, so it reaches ts
	// (and through it the netFD) only weakly: the hub must never keep a
	// dropped conn reachable, or its cleanup would never close it.
	wts := weak.Make(ts)
	fd.reg.SetErrQueueHandler(func() bool {
		if ts := wts.Value(); ts != nil {
			return ts.drain()
		}
		return false // collected: the socket is being closed
	})
	return nil
}

func (fd *netFD) timestampStats() WriteTimestampStats {
	ts := fd.tstamps.p.Load()
	if ts == nil {
		return WriteTimestampStats{}
	}
	return WriteTimestampStats{
		Sampled:   ts.sampled.Load(),
		Recorded:  ts.recorded.Load(),
		Lost:      ts.lost.Load(),
		ErrEvents: ts.errEvents.Load(),
		ErrWakes:  ts.errWakes.Load(),
	}
}

// writeSampled is Write for a sampled write: the first size bytes (A80's
// bucket) are sent requesting SCHED and SENT, the rest requesting ACKED.
// fd.wmu held, Prepare(Write) done, len(p) > 0.
func (fd *netFD) writeSampled(ts *tstamper, p []byte) (int, error) {
	size := latencyBucket(len(p))
	first, rest := p, p[len(p):]
	flags := uint32(tsSampled | tsAck)
	if len(p) > size {
		first, rest, flags = p[:size], p[size:], tsSampled
	}
	slot := ts.reserve(size)
	ts.sampled.Add(1)
	nn, err := fd.sendStamped(ts, slot, first, flags)
	if len(rest) > 0 && err == nil {
		var n int
		n, err = fd.sendStamped(ts, slot, rest, tsAck)
		nn += n
	}
	if err != nil {
		ts.release(slot)
	}
	return nn, err
}

// sendStamped writes all of b, every sendmsg carrying a request for the
// timestamps in flags, after recording in the slot the keys of b's first
// and last byte. The kernel attaches the request to the last segment the
// sendmsg queued, and only if that segment has not been pushed out during
// the call already: which sendmsg of a chunk gets its timestamps is the
// kernel's to say, so SCHED and SENT are taken from any of them (the same
// key for both), and the ACK from the one that ends the write.
func (fd *netFD) sendStamped(ts *tstamper, slot int, b []byte, flags uint32) (int, error) {
	oob := ts.cmsg[:unix.CmsgSpace(4)]
	h := (*unix.Cmsghdr)(unsafe.Pointer(&ts.cmsg[0]))
	h.Level, h.Type = unix.SOL_SOCKET, unix.SO_TIMESTAMPING
	h.SetLen(unix.CmsgLen(4))
	*(*uint32)(unsafe.Pointer(&ts.cmsg[unix.CmsgLen(0)])) = flags
	first := uint32(fd.stats.bytesWritten.Load() - ts.base)
	last := first + uint32(len(b)) - 1
	ts.mu.Lock()
	if s := &ts.ring[slot]; s.seq != 0 {
		if flags&tsSampled != 0 {
			s.lo, s.key, s.keyOK = first, last, true
		}
		if flags&tsAck != 0 {
			s.ackKey, s.ackOK = last, true
		}
	}
	ts.unlock()
	// Named as Write names it: sampling stays invisible in errors.
	return fd.writeAll(func(fd int, b []byte) (int, error) { return unix.SendmsgN(fd, b, oob, nil, 0) }, b)
}

// reserve takes a ring slot for a new sample, overwriting the oldest one
// (counted lost) when all are in flight. Writer only.
func (ts *tstamper) reserve(size int) int {
	ts.seq++
	ts.mu.Lock()
	defer ts.unlock()
	oldest := 0
	for i := range ts.ring {
		if ts.ring[i].seq == 0 {
			oldest = i
			break
		}
		if ts.ring[i].seq < ts.ring[oldest].seq {
			oldest = i
		}
	}
	if ts.ring[oldest].seq != 0 {
		ts.lost.Add(1)
	}
	ts.ring[oldest] = tsSample{seq: ts.seq, size: size}
	return oldest
}

// release frees a slot whose write failed.
func (ts *tstamper) release(slot int) {
	ts.mu.Lock()
	if ts.ring[slot].seq != 0 {
		ts.ring[slot] = tsSample{}
		ts.lost.Add(1)
	}
	ts.unlock()
}

// unlock is the writer's mu.Unlock. The hub's TryLock may have failed
// meanwhile: it then left the error queue as it was, and with
// edge-triggered epoll no new EPOLLERR comes until another timestamp does,
// so the writer reads the queue itself (holding fd.wmu, hence a reference
// on the fd). The hub sets missed before its TryLock, the writer tests it
// after its Unlock: one of them sees the other.
func (ts *tstamper) unlock() {
	ts.mu.Unlock()
	if ts.missed.Swap(false) {
		ts.mu.Lock()
		ts.readQueue()
		ts.mu.Unlock()
	}
}

// drain is the registration's error-queue handler; it runs on the hub
// goroutine when the socket reports EPOLLERR and never blocks: it reads
// the error queue with MSG_DONTWAIT, matches the timestamps to samples,
// and reports whether EPOLLERR can have meant nothing else. A socket error
// (SO_ERROR) is never read here, so the waiters' next syscall still meets
// it: after the queue is empty, poll(2) with a zero timeout says whether
// POLLERR remains, and if it does (an error, or a timestamp that arrived
// meanwhile) both directions are woken as they would be without
// timestamps.
func (ts *tstamper) drain() bool {
	fd := ts.fd
	if !fd.refs.incref() {
		return false // closing: the waiters are being woken anyway
	}
	defer func() {
		if fd.refs.decref() {
			// Close is waiting for this reference: close the socket off
			// the hub, which must not block in a lingering close(2).
			go fd.destroy()
		}
	}()
	ts.missed.Store(true)
	if !ts.mu.TryLock() {
		// A writer is filling a slot; it reads the queue when it unlocks.
		// Wake as if timestamps were off.
		ts.errWakes.Add(1)
		return false
	}
	ts.missed.Store(false)
	defer ts.mu.Unlock()
	ts.errEvents.Add(1)
	ts.readQueue()
	ts.pfd[0].Revents = 0
	n, err := unix.Poll(ts.pfd[:], 0)
	if err != nil || n > 0 && ts.pfd[0].Revents&unix.POLLERR != 0 {
		ts.errWakes.Add(1)
		return false
	}
	return true
}

// readQueue reads the error queue until it is empty. mu held, and a
// reference on the fd or fd.wmu (which stands for one: see netFD).
func (ts *tstamper) readQueue() {
	fd := ts.fd
	for {
		_, oobn, _, _, err := unix.Recvmsg(fd.sysfd, ts.data[:], ts.oob[:], unix.MSG_ERRQUEUE|unix.MSG_DONTWAIT)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			break // EAGAIN: the queue is empty
		}
		ts.parse(ts.oob[:oobn])
	}
}

// parse reads one error-queue message's control messages: the software
// timestamp (SCM_TIMESTAMPING's first timespec) and its kind and key
// (the sock_extended_err of origin SO_EE_ORIGIN_TIMESTAMPING). mu held.
func (ts *tstamper) parse(b []byte) {
	var when int64
	var ee unix.SockExtendedErr
	haveTS, haveEE := false, false
	for len(b) >= unix.SizeofCmsghdr {
		var h unix.Cmsghdr
		copy(unsafe.Slice((*byte)(unsafe.Pointer(&h)), unix.SizeofCmsghdr), b)
		l := int(h.Len)
		if l < unix.CmsgLen(0) || l > len(b) {
			return
		}
		data := b[unix.CmsgLen(0):l]
		switch {
		case h.Level == unix.SOL_SOCKET && h.Type == unix.SCM_TIMESTAMPING:
			var t unix.Timespec
			if len(data) >= int(unsafe.Sizeof(t)) {
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&t)), unsafe.Sizeof(t)), data)
				when, haveTS = t.Nano(), true
			}
		case h.Level == unix.SOL_IP && h.Type == unix.IP_RECVERR,
			h.Level == unix.SOL_IPV6 && h.Type == unix.IPV6_RECVERR:
			if len(data) >= sizeofSockExtendedErr {
				copy(unsafe.Slice((*byte)(unsafe.Pointer(&ee)), sizeofSockExtendedErr), data)
				haveEE = ee.Errno == uint32(unix.ENOMSG) && ee.Origin == unix.SO_EE_ORIGIN_TIMESTAMPING
			}
		}
		b = b[min(len(b), cmsgAlign(l)):]
	}
	if haveTS && haveEE && when != 0 {
		ts.match(ee.Info, ee.Data, when)
	}
}

// cmsgAlign rounds a control-message length up as CMSG_ALIGN does.
func cmsgAlign(l int) int {
	const a = int(unsafe.Sizeof(uintptr(0)))
	return (l + a - 1) &^ (a - 1)
}

// match files one timestamp with the sample it belongs to, reports the
// sample once complete, and gives up samples whose ACK can no longer come
// (a later byte's ACK arrived first). mu held.
func (ts *tstamper) match(kind, key uint32, when int64) {
	for i := range ts.ring {
		s := &ts.ring[i]
		if s.seq == 0 {
			continue
		}
		switch kind {
		case unix.SCM_TSTAMP_SCHED:
			if s.keyOK && s.sent == 0 && within(key, s.lo, s.key) {
				s.sched, s.schedKey = when, key // the last SCHED counts
			}
		case unix.SCM_TSTAMP_SND:
			if s.keyOK && s.sent == 0 && s.sched != 0 && key == s.schedKey {
				s.sent = when
			}
		case unix.SCM_TSTAMP_ACK:
			// An ACK comes after the SCHED and SENT of earlier bytes: a
			// sample that has none by its ACK, or whose ACK was passed,
			// never will.
			if s.ackOK && key == s.ackKey && s.sent != 0 {
				s.acked = when
			} else if s.ackOK && int32(key-s.ackKey) >= 0 {
				*s = tsSample{}
				ts.lost.Add(1)
				continue
			}
		}
		if s.sched != 0 && s.sent != 0 && s.acked != 0 {
			sender := time.Duration(max(s.sent-s.sched, 0))
			transfer := time.Duration(max(s.acked-s.sent, 0))
			size := s.size
			*s = tsSample{}
			ts.recorded.Add(1)
			if ts.obs != nil {
				ts.obs.ObserveWriteLatency(sender, transfer, size)
			}
		}
	}
}

// sizeofSockExtendedErr is sizeof(struct sock_extended_err).
const sizeofSockExtendedErr = int(unsafe.Sizeof(unix.SockExtendedErr{}))
