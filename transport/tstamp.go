package transport

import (
	"errors"
	"time"
)

// DefaultWriteLatencyPeriod is gRFC A80's TCP_LATENCY_RECORD_PERIOD: one
// write in 1000 is timestamped.
const DefaultWriteLatencyPeriod = 1000

// WriteLatencyObserver receives gRFC A80's per-write latencies of a conn
// with write timestamps on (EnableWriteTimestamps). Its method runs on the
// conn's hub goroutine (rarely, in a writing goroutine that read the
// timestamps in the hub's stead), one call at a time: it must return
// quickly, must not block, and must not call into the conn.
type WriteLatencyObserver interface {
	// ObserveWriteLatency reports one sampled write. sender is A80's
	// sender latency: the last SCHED timestamp of the write's first
	// size bytes to their SENT timestamp (qdisc, pacing, throttling).
	// transfer is A80's transfer latency: that SENT timestamp to the
	// ACKED timestamp of the write. size is A80's bucket of the write
	// (1024, 8192, 65536, 262144 or 2097152), the label of transfer.
	ObserveWriteLatency(sender, transfer time.Duration, size int)
}

// WriteTimestampStats are the counters of a conn's write timestamping.
type WriteTimestampStats struct {
	Sampled  uint64 // writes sent with timestamp requests
	Recorded uint64 // samples whose three timestamps arrived and were reported
	Lost     uint64 // samples given up: the kernel did not stamp them, or a newer sample took their ring slot
	// ErrEvents counts EPOLLERR events the hub read the error queue for;
	// ErrWakes those of them after which a socket error could not be
	// ruled out, so both directions were woken (as without timestamps).
	ErrEvents, ErrWakes uint64
}

// errTimestampsOn is returned when write timestamps are already on.
var errTimestampsOn = errors.New("transport: write timestamps already on")

// EnableWriteTimestamps turns on gRFC A80's write-latency sampling for a
// TCP conn: SO_TIMESTAMPING is set on the socket, and one Write in period
// (≤ 0 means DefaultWriteLatencyPeriod), starting at a random offset, is
// split at A80's size bucket and sent with timestamp requests. The hub
// reads the timestamps from the socket's error queue when it reports
// EPOLLERR and calls o with the latencies. Writes that are not sampled are
// unchanged: no extra syscall, no allocation. (WriteBuffers is never
// sampled: only Write counts toward the period.)
//
// It fails, leaving the conn unchanged, on a unix socket, where hubs are
// unsupported, when the kernel refuses SO_TIMESTAMPING (an *os.SyscallError)
// or when timestamps are on already. It refuses an MPTCP socket (an
// *os.SyscallError wrapping EOPNOTSUPP): the kernel accepts the option
// there but delivers the timestamps on the subflows' error queues, so no
// sample would ever be recorded. Call it before writing, or at least
// when no Write is in flight.
func (c *Conn) EnableWriteTimestamps(period int, o WriteLatencyObserver) error {
	if period <= 0 {
		period = DefaultWriteLatencyPeriod
	}
	if c.net != "tcp" {
		return c.opErr("set", errUnixTimestamps)
	}
	if err := c.fd.enableTimestamps(period, o); err != nil {
		return c.opErr("set", err)
	}
	return nil
}

// errUnixTimestamps: SO_TIMESTAMPING's byte keys are TCP's.
var errUnixTimestamps = errors.New("transport: write timestamps need a TCP conn")

// WriteTimestampStats returns the conn's timestamping counters (zero when
// timestamps are off).
func (c *Conn) WriteTimestampStats() WriteTimestampStats { return c.fd.timestampStats() }

// latencyBucket returns A80's benchmark size for a write of n bytes: the
// first size bytes are the sampled chunk. (A80's table writes 8196 for the
// second bucket; 8 KiB is what it means, and what the bucket bounds are.)
func latencyBucket(n int) int {
	switch {
	case n < 8<<10:
		return 1 << 10
	case n < 64<<10:
		return 8 << 10
	case n < 256<<10:
		return 64 << 10
	case n < 2<<20:
		return 256 << 10
	}
	return 2 << 20
}
