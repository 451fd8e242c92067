package telemetry

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// localHist keeps one writer's histogram of non-negative integer values
// (a conn direction's syscall sizes, a hub's events per poll) in plain
// counters, and hands what it counted to an SDK histogram when a reader
// collects (flush). Recording then costs a few uncontended atomic additions
// on the writer's own cache lines instead of a call into the metrics SDK
// per syscall, whose histogram is shared by every conn and every core.
//
// flush reproduces the SDK's own result exactly: for each bucket it records
// as many values as were counted there, adding up to the exact sum of the
// values counted there (each within one of the bucket's mean, so within its
// bounds). Count, sum and bucket counts are what recording each value would
// give; the min and max that OTLP exporters carry are the least and greatest
// bucket means (±1) rather than the extremes seen.
//
// Ownership: one writer at a time calls observe (the goroutine holding the
// conn's read or write lock, or the hub goroutine). seq is odd while it
// updates a bucket, so that flush reads a consistent snapshot (a sequence
// lock with one writer). flush may run in any goroutine; mu serialises
// flushes and guards the flushed fields and scratch.
type localHist struct {
	bounds []float64 // the instrument's bucket boundaries, ascending

	seq     atomic.Uint32
	buckets []localBucket // len(bounds)+1, counted since creation

	mu      sync.Mutex
	flushed []bucketTotals // what previous flushes handed on
	scratch []bucketTotals // flush's snapshot
}

type localBucket struct{ count, sum atomic.Uint64 }

type bucketTotals struct{ count, sum uint64 }

func newLocalHist(bounds []float64) *localHist {
	n := len(bounds) + 1
	return &localHist{
		bounds:  bounds,
		buckets: make([]localBucket, n),
		flushed: make([]bucketTotals, n),
		scratch: make([]bucketTotals, n),
	}
}

// observe counts one value v ≥ 0. Writer only.
func (h *localHist) observe(v int) {
	b := 0
	for b < len(h.bounds) && float64(v) > h.bounds[b] {
		b++
	}
	h.seq.Add(1)
	h.buckets[b].count.Add(1)
	h.buckets[b].sum.Add(uint64(v))
	h.seq.Add(1)
}

// flush calls record with values that reproduce what was observed since
// the previous flush (see localHist). It allocates nothing.
func (h *localHist) flush(record func(v float64)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for {
		s := h.seq.Load()
		if s&1 != 0 {
			runtime.Gosched() // the writer is inside observe
			continue
		}
		for b := range h.buckets {
			h.scratch[b] = bucketTotals{h.buckets[b].count.Load(), h.buckets[b].sum.Load()}
		}
		if h.seq.Load() == s {
			break
		}
	}
	for b, now := range h.scratch {
		d, s := now.count-h.flushed[b].count, now.sum-h.flushed[b].sum
		h.flushed[b] = now
		if d == 0 {
			continue
		}
		// d values adding up to s: s%d of them one above the floor of the
		// mean, the rest at it.
		q, r := s/d, s%d
		for i := range d {
			v := q
			if i < r {
				v++
			}
			record(float64(v))
		}
	}
}
