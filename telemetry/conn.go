package telemetry

import (
	"context"
	"errors"
	"net"
	"runtime"
	"sync"
	"time"
	"weak"

	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// errInstrumented is returned for a conn instrumented twice by one
// Telemetry.
var errInstrumented = errors.New("telemetry: conn already instrumented")

// InstrumentConn makes c report A80's metrics: it counts as created and
// active until it closes, its syscalls feed grpc.tcp.write_size and
// grpc.tcp.read_size, and its TCP_INFO is sampled on its hub's timers and
// once more when it closes. A unix-socket conn reports the same op metrics
// as hubio.unix.* (grpc.tcp.* counts TCP conns only, as in A80) and has no
// TCP_INFO. Instrument the conn's hub too
// (InstrumentHub) for the hub metrics.
//
// Telemetry holds the conn weakly: a conn dropped unclosed is still
// collected (transport then closes its fd), and it leaves the metrics as if
// it had closed, with the syscalls counted when they were last collected.
func (t *Telemetry) InstrumentConn(c *transport.Conn) error {
	o := &connObs{t: t, c: weak.Make(c), hub: c.Hub(),
		reads: newLocalHist(sizeBuckets), writes: newLocalHist(sizeBuckets)}
	o.tcp = c.LocalAddr() != nil && c.LocalAddr().Network() == "tcp"
	var kvs []attribute.KeyValue
	if t.cfg.addrLabels && o.tcp {
		kvs = append(addrAttrs("network.local", c.LocalAddr()), addrAttrs("network.peer", c.RemoteAddr())...)
	}
	o.attrs = attribute.NewSet(kvs...)
	if len(kvs) > 0 {
		o.opts = []metric.RecordOption{metric.WithAttributeSet(o.attrs)}
		o.addOpts = []metric.AddOption{metric.WithAttributeSet(o.attrs)}
	}
	ops := o.ops()
	o.recordRead = func(v float64) { ops.readSize.Record(bg, v, o.opts...) }
	o.recordWrite = func(v float64) { ops.writeSize.Record(bg, v, o.opts...) }
	if !t.conns.add(o) {
		return errInstrumented
	}
	c.SetObserver(o)
	runtime.AddCleanup(c, (*connObs).collected, o)
	if isClosed(c) {
		// Closed before the observer was set: Close may not have seen it.
		// (If it did, the second ObserveClose does nothing.)
		o.ObserveClose(nil)
		return nil
	}
	t.enableLatency(o, c)
	if o.tcp {
		o.zeroCounters()
	}
	if o.tcp && t.cfg.tcpInterval > 0 {
		o.mu.Lock()
		if !o.closed {
			o.arm()
		}
		o.mu.Unlock()
	}
	return nil
}

// ops returns the op instruments of o's kind of conn: grpc.tcp.* for TCP,
// hubio.unix.* for a unix socket.
func (o *connObs) ops() *opInstruments {
	if o.tcp {
		return &o.t.inst.tcp
	}
	return &o.t.inst.unix
}

// addrAttrs returns A80's address labels for a TCP address.
func addrAttrs(prefix string, a net.Addr) []attribute.KeyValue {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return nil
	}
	return []attribute.KeyValue{
		attribute.String(prefix+".address", ta.IP.String()),
		attribute.Int(prefix+".port", ta.Port),
	}
}

// connObs is one instrumented conn: a transport.IOObserver.
//
// Ownership: t, c, hub, tcp, attrs and the option slices are set before the
// observer is installed and never change. reads and writes are written by
// the conn's reader and writer (ObserveRead, ObserveWrite) and flushed by
// collections and by the conn's retirement (see localHist). mu guards last,
// stop and closed:
// the TCP_INFO timer (hub goroutine) and ObserveClose (the closing
// goroutine) both take it. seen is guarded by the registry's mu.
//
// c is weak, and nothing the Telemetry or the hub's timers hold points to
// the conn: the conn's netFD points to its observer, never the reverse, so
// a conn dropped unclosed is collected as transport promises.
type connObs struct {
	t       *Telemetry
	c       weak.Pointer[transport.Conn]
	hub     *poller.Hub
	tcp     bool
	attrs   attribute.Set
	opts    []metric.RecordOption // attrs, for histograms; nil when empty
	addOpts []metric.AddOption    // attrs, for counters; nil when empty

	// The syscall sizes, handed to grpc.tcp.read_size and write_size at
	// each collection (recordRead, recordWrite).
	reads, writes           *localHist
	recordRead, recordWrite func(float64)

	mu     sync.Mutex
	last   transport.TCPInfo // the previous sample: counters are recorded as deltas
	stop   func() bool       // cancels the pending TCP_INFO timer
	closed bool

	seen transport.ConnStats // the conn's counters when last read
}

// ObserveRead counts one read syscall's size, for grpc.tcp.read_size at
// the next collection.
func (o *connObs) ObserveRead(n int) { o.reads.observe(n) }

// ObserveWrite counts one write syscall's size, for grpc.tcp.write_size at
// the next collection.
func (o *connObs) ObserveWrite(n int) { o.writes.observe(n) }

// flush hands the sizes counted since the previous flush to the SDK,
// unless a producer exports them (ProduceSizes).
func (o *connObs) flush() {
	if o.t.sizesProduced.Load() {
		return
	}
	o.reads.flush(o.recordRead)
	o.writes.flush(o.recordWrite)
}

// ObserveClose cancels the TCP_INFO timer, records the last sample (with
// grpc.tcp.recurring_retransmits, which A80 takes at close) and retires the
// conn's counters.
func (o *connObs) ObserveClose(info *transport.TCPInfo) {
	o.mu.Lock()
	o.closed = true
	if o.stop != nil {
		o.stop()
		o.stop = nil
	}
	if info != nil {
		o.record(*info, true)
	}
	o.mu.Unlock()
	o.t.conns.remove(o)
}

// collected retires a conn that was garbage-collected without being closed
// (its cleanup; transport's own closes the fd).
func (o *connObs) collected() { o.ObserveClose(nil) }

// zeroCounters adds 0 to each TCP_INFO counter, so that its series exists
// from the conn's first collection: rate() and increase() over
// packets_retransmitted and the others work before the first retransmit.
func (o *connObs) zeroCounters() {
	in := &o.t.inst
	for _, c := range []metric.Int64Counter{in.packetsSent, in.packetsRetrans, in.packetsSpurious,
		in.recurRTO, in.bytesSent, in.bytesRetrans} {
		c.Add(bg, 0, o.addOpts...)
	}
}

// arm sets the TCP_INFO alarm at a random 10–110% of the interval, on the
// conn's hub. A runtime timer keeps the interval and hands the alarm to the
// hub when it expires (due), so that the hub's heap does not hold one
// pending timer per conn: a pending timer makes the hub read the clock at
// every wake-up to see whether it is due (docs/telemetry.md, fifth pass).
// mu held.
func (o *connObs) arm() {
	o.stop = time.AfterFunc(jitter(o.t.cfg.tcpInterval), o.due).Stop
}

// due hands the expired alarm to the hub goroutine, where sample runs (a
// conn closed meanwhile is skipped there). A runtime timer's goroutine.
func (o *connObs) due() { o.hub.AfterFunc(0, o.sample) }

// sample is the TCP_INFO alarm; it runs on the hub goroutine.
func (o *connObs) sample() {
	o.mu.Lock()
	defer o.mu.Unlock()
	c := o.c.Value()
	if o.closed || c == nil {
		return
	}
	if info, err := c.TCPInfo(); err == nil {
		o.record(info, false)
	}
	o.arm()
}

// record records one TCP_INFO sample: the histograms with its values, the
// counters with what grew since the previous sample. mu held.
func (o *connObs) record(info transport.TCPInfo, final bool) {
	in := &o.t.inst
	if info.MinRTT > 0 {
		in.minRTT.Record(bg, info.MinRTT.Seconds(), o.opts...)
	}
	if !info.DeliveryRateAppLimited && info.DeliveryRate > 0 {
		in.deliveryRate.Record(bg, float64(info.DeliveryRate), o.opts...)
	}
	add := func(c metric.Int64Counter, now, prev uint64) {
		if now > prev {
			c.Add(bg, int64(now-prev), o.addOpts...)
		}
	}
	last := &o.last
	add(in.packetsSent, uint64(info.PacketsSent), uint64(last.PacketsSent))
	add(in.packetsRetrans, uint64(info.PacketsRetransmitted), uint64(last.PacketsRetransmitted))
	add(in.packetsSpurious, uint64(info.PacketsSpuriousRetransmitted), uint64(last.PacketsSpuriousRetransmitted))
	add(in.bytesSent, info.BytesSent, last.BytesSent)
	add(in.bytesRetrans, info.BytesRetransmitted, last.BytesRetransmitted)
	if final {
		add(in.recurRTO, uint64(info.Retransmits), 0)
	}
	o.last = info
}

// connRegistry holds the instrumented conns that are open, and what the
// closed ones counted, per attribute set, for the observable A80 counters.
type connRegistry struct {
	mu   sync.Mutex
	live map[weak.Pointer[transport.Conn]]*connObs
	aggs map[aggKey]*connAgg
}

// aggKey identifies the conns counted together: one kind (TCP or unix)
// and one attribute set.
type aggKey struct {
	tcp   bool
	attrs attribute.Distinct
}

// connAgg is what the conns of one aggKey counted.
type connAgg struct {
	ops           *opInstruments
	attrs         attribute.Set
	opt           metric.ObserveOption
	created, live int64
	reads, writes uint64 // syscalls of closed conns
	// readSizes and writeSizes are the closed conns' syscall sizes, per
	// bucket, for SizeHistograms; len(sizeBuckets)+1 each.
	readSizes, writeSizes []bucketTotals
}

func (r *connRegistry) init() {
	r.live = make(map[weak.Pointer[transport.Conn]]*connObs)
	r.aggs = make(map[aggKey]*connAgg)
}

// add registers o; false if its conn is registered already.
func (r *connRegistry) add(o *connObs) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.live[o.c]; ok {
		return false
	}
	r.live[o.c] = o
	a := r.agg(o)
	a.created++
	a.live++
	return true
}

// remove retires o's counters and hands on its sizes; a second call does
// nothing. (A syscall that returns after the conn closed, racing Close, is
// counted in Conn.Stats but its size is not handed on.)
func (r *connRegistry) remove(o *connObs) {
	o.flush() // outside mu, as in observe; a second flush hands on nothing
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.live[o.c] != o {
		return
	}
	delete(r.live, o.c)
	a := r.agg(o)
	s := o.stats()
	a.live--
	a.reads += s.Reads
	a.writes += s.Writes
	o.reads.addTotals(a.readSizes)
	o.writes.addTotals(a.writeSizes)
}

// agg returns the aggregate o counts in. mu held.
func (r *connRegistry) agg(o *connObs) *connAgg {
	k := aggKey{o.tcp, o.attrs.Equivalent()}
	a, ok := r.aggs[k]
	if !ok {
		a = &connAgg{ops: o.ops(), attrs: o.attrs, opt: metric.WithAttributeSet(o.attrs),
			readSizes:  make([]bucketTotals, len(sizeBuckets)+1),
			writeSizes: make([]bucketTotals, len(sizeBuckets)+1)}
		r.aggs[k] = a
	}
	return a
}

// observe is the callback of the observable A80 counters. It also hands
// the live conns' syscall sizes to the size histograms: the SDK runs
// callbacks before it reads the synchronous instruments, so they are in
// the same collection. The sizes are handed on outside mu, so that a
// collection with much to hand on does not hold up conns opening and
// closing.
func (r *connRegistry) observe(t *Telemetry) metric.Callback {
	var cmu sync.Mutex   // guards conns: two readers may collect at once
	var conns []*connObs // scratch, reused by each collection
	return func(_ context.Context, ob metric.Observer) error {
		cmu.Lock()
		r.mu.Lock()
		conns = conns[:0]
		for _, o := range r.live {
			conns = append(conns, o)
		}
		r.mu.Unlock()
		for _, o := range conns {
			o.flush()
		}
		clear(conns) // hold no conn until the next collection
		cmu.Unlock()

		r.mu.Lock()
		defer r.mu.Unlock()
		type sums struct{ reads, writes uint64 }
		live := make(map[aggKey]sums, len(r.aggs))
		for _, o := range r.live {
			s := o.stats()
			k := aggKey{o.tcp, o.attrs.Equivalent()}
			v := live[k]
			v.reads += s.Reads
			v.writes += s.Writes
			live[k] = v
		}
		for k, a := range r.aggs {
			l := live[k]
			ob.ObserveInt64(a.ops.created, a.created, a.opt)
			ob.ObserveInt64(a.ops.connCount, a.live, a.opt)
			ob.ObserveInt64(a.ops.syscallReads, int64(a.reads+l.reads), a.opt)
			ob.ObserveInt64(a.ops.syscallWrites, int64(a.writes+l.writes), a.opt)
		}
		return nil
	}
}

// stats returns the conn's counters, or those last read if it has been
// collected. The registry's mu held.
func (o *connObs) stats() transport.ConnStats {
	if c := o.c.Value(); c != nil {
		o.seen = c.Stats()
	}
	return o.seen
}

// isClosed reports whether c has been closed: Control fails only then.
func isClosed(c *transport.Conn) bool {
	rc, err := c.SyscallConn()
	return err != nil || rc.Control(func(uintptr) {}) != nil
}
