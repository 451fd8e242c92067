package telemetry

import (
	"sync"
	"sync/atomic"
)

// localHist keeps one writer's histogram of non-negative integer values
// (a conn direction's syscall sizes, a hub's sampled events per poll) in
// plain counters, and hands what it counted to an SDK histogram when a
// reader collects (flush). Recording then costs one uncontended atomic
// addition on the writer's own cache lines instead of a call into the
// metrics SDK per syscall, whose histogram is shared by every conn and
// every core.
//
// flush reproduces the SDK's own result exactly: for each bucket it records
// as many values as were counted there, adding up to the exact sum of the
// values counted there (each within one of the bucket's mean, so within its
// bounds). Count, sum and bucket counts are what recording each value would
// give; the min and max that OTLP exporters carry are the least and greatest
// bucket means (±1) rather than the extremes seen.
//
// State layout: each bucket is one word, count<<sumBits | sum, so that one
// atomic addition counts a value and a reader always sees a bucket's count
// and sum together. The word holds what was counted since its last fold:
// the addition that brings a word to foldEvery values moves it into wide
// (under mu), so a word never holds more than foldEvery values (count <
// 2^countBits) summing to less than 2^sumBits (values are below 2^31).
//
// Ownership: one writer at a time calls observe (the goroutine holding the
// conn's read or write lock, or the hub goroutine). observe writes only its
// bucket's word (and, at a fold, wide under mu), never the struct itself:
// the struct's line stays read-only on the syscall path, so it stays in
// every core's cache while the reader and the writer of a conn move
// between cores (a per-writer tick kept here used to cost as much as the
// addition, profiles at one caller per conn). mu guards wide and flushed:
// the writer's fold and flush (any goroutine) take it.
type localHist struct {
	bounds []float64       // the instrument's bucket boundaries, ascending
	words  []atomic.Uint64 // len(bounds)+1; see above

	mu      sync.Mutex
	wide    []bucketTotals // folded words, since creation
	flushed []bucketTotals // what previous flushes handed on
}

type bucketTotals struct{ count, sum uint64 }

const (
	sumBits   = 47
	countBits = 64 - sumBits
	sumMask   = 1<<sumBits - 1
	foldEvery = 1 << 16 // < 1<<countBits; foldEvery values below 2^31 sum to less than 2^sumBits
)

func newLocalHist(bounds []float64) *localHist {
	n := len(bounds) + 1
	// A conn's two histograms are written by its reader and its writer, on
	// different cores: keep a cache line free on each side of the words.
	words := make([]atomic.Uint64, 8+n+8)[8 : 8+n]
	return &localHist{
		bounds:  bounds,
		words:   words,
		wide:    make([]bucketTotals, n),
		flushed: make([]bucketTotals, n),
	}
}

// observe counts one value, 0 ≤ v < 2^31. Writer only.
func (h *localHist) observe(v int) {
	b := 0
	for b < len(h.bounds) && float64(v) > h.bounds[b] {
		b++
	}
	if w := h.words[b].Add(1<<sumBits | uint64(v)&sumMask); w>>sumBits == foldEvery {
		h.fold(b)
	}
}

// fold moves word b into wide. Writer only: no other call adds to the word
// between the addition that filled it and the swap.
func (h *localHist) fold(b int) {
	h.mu.Lock()
	w := h.words[b].Swap(0)
	h.wide[b].count += w >> sumBits
	h.wide[b].sum += w & sumMask
	h.mu.Unlock()
}

// flush calls record with values that reproduce what was observed since
// the previous flush (see localHist). It allocates nothing.
func (h *localHist) flush(record func(v float64)) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for b := range h.words {
		w := h.words[b].Load()
		now := bucketTotals{h.wide[b].count + w>>sumBits, h.wide[b].sum + w&sumMask}
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

// addTotals adds to dst (len(bounds)+1) every value observed since h was
// made, per bucket: what a cumulative histogram of h's values holds. Unlike
// flush it changes nothing, so any number of readers may call it.
func (h *localHist) addTotals(dst []bucketTotals) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for b := range h.words {
		w := h.words[b].Load()
		dst[b].count += h.wide[b].count + w>>sumBits
		dst[b].sum += h.wide[b].sum + w&sumMask
	}
}
