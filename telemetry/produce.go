package telemetry

import (
	"time"

	"go.opentelemetry.io/otel/attribute"
)

// SizeHistogram is one syscall-size histogram (grpc.tcp.write_size,
// grpc.tcp.read_size, hubio.unix.write_size or hubio.unix.read_size) as a
// cumulative histogram since the Telemetry was made (StartTime): what a
// metric.Producer exports in place of the SDK's histogram of the same name
// (ProduceSizes). Name, Unit, Description and Bounds are the instrument's.
type SizeHistogram struct {
	Name, Unit, Description string
	// Bounds are the bucket boundaries, shared by every call: do not
	// modify them.
	Bounds []float64
	// Points holds one series per attribute set that has counted a
	// syscall, open conns and closed ones together; a series with no
	// syscall yet is left out, as the SDK leaves out a histogram series
	// nothing was recorded in.
	Points []SizePoint
}

// SizePoint is one series of a SizeHistogram: the conns of one attribute
// set (empty, or A80's address labels under WithAddressLabels).
type SizePoint struct {
	Attributes attribute.Set
	// Count is the number of syscalls, Sum the bytes they moved (exact),
	// BucketCounts the syscalls per bucket: len(Bounds)+1, owned by the
	// caller.
	Count, Sum   uint64
	BucketCounts []uint64
}

// StartTime returns when New made t: the start time of the cumulative
// series SizeHistograms reports.
func (t *Telemetry) StartTime() time.Time { return t.start }

// ProduceSizes hands the syscall-size histograms over to a
// metric.Producer: from the call on, collections no longer hand the sizes
// counted per conn to the meter's write_size and read_size histograms (one
// SDK Record per syscall, at collection), and the producer exports them
// from SizeHistograms instead. The other instruments are unchanged. It
// cannot be undone; a second call does nothing.
//
// Call it before the meter's provider first collects (the producer in
// telemetry/sdkproducer does, when it is made): sizes handed to the SDK
// before the call stay in its histograms, which would then report the same
// series as the producer.
func (t *Telemetry) ProduceSizes() { t.sizesProduced.Store(true) }

// SizeHistograms returns the syscall-size histograms, cumulative since
// StartTime, each series summing the open conns' counts and the closed
// ones'. Histograms with no series are left out. It reads the conns'
// counts without changing them, so any number of producers and readers
// may call it; it allocates its result.
func (t *Telemetry) SizeHistograms() []SizeHistogram {
	r := &t.conns
	type acc struct {
		attrs         attribute.Set
		reads, writes []bucketTotals
	}
	n := len(sizeBuckets) + 1
	r.mu.Lock()
	accs := make(map[aggKey]*acc, len(r.aggs))
	for k, a := range r.aggs {
		v := &acc{attrs: a.attrs, reads: make([]bucketTotals, n), writes: make([]bucketTotals, n)}
		copy(v.reads, a.readSizes)
		copy(v.writes, a.writeSizes)
		accs[k] = v
	}
	for _, o := range r.live {
		// Every live conn's key has an aggregate (add made it).
		v := accs[aggKey{o.tcp, o.attrs.Equivalent()}]
		o.reads.addTotals(v.reads)
		o.writes.addTotals(v.writes)
	}
	r.mu.Unlock()

	var out []SizeHistogram
	for _, m := range []struct {
		tcp   bool
		info  histInfo
		write bool
	}{
		{true, t.inst.tcp.writeInfo, true},
		{true, t.inst.tcp.readInfo, false},
		{false, t.inst.unix.writeInfo, true},
		{false, t.inst.unix.readInfo, false},
	} {
		h := SizeHistogram{Name: m.info.name, Unit: m.info.unit, Description: m.info.desc, Bounds: sizeBuckets}
		for k, v := range accs {
			if k.tcp != m.tcp {
				continue
			}
			b := v.reads
			if m.write {
				b = v.writes
			}
			p := SizePoint{Attributes: v.attrs, BucketCounts: make([]uint64, n)}
			for i, bt := range b {
				p.BucketCounts[i] = bt.count
				p.Count += bt.count
				p.Sum += bt.sum
			}
			if p.Count > 0 {
				h.Points = append(h.Points, p)
			}
		}
		if len(h.Points) > 0 {
			out = append(out, h)
		}
	}
	return out
}
