package main

import (
	"math/bits"
	"time"
)

// hist is a latency histogram with log-linear buckets: values below 2^subBits
// nanoseconds are exact, larger ones fall into 2^subBits buckets per power of
// two, so a reported quantile is within 1/2^subBits (1.6%) of the truth.
// Adding does not allocate. A hist belongs to one goroutine.
type hist struct {
	counts [histBuckets]uint64
	n      uint64
}

const (
	subBits     = 6
	subBuckets  = 1 << subBits
	histBuckets = (64-subBits)*subBuckets + subBuckets
)

// bucket returns the index of v's bucket.
func bucket(v uint64) int {
	if v < subBuckets {
		return int(v)
	}
	shift := bits.Len64(v) - subBits - 1
	return shift*subBuckets + int(v>>shift) // v>>shift is in [64, 128)
}

// bucketMid returns the middle of bucket i's range, in nanoseconds.
func bucketMid(i int) uint64 {
	if i < 2*subBuckets {
		return uint64(i)
	}
	shift := i/subBuckets - 1
	low := uint64(i%subBuckets+subBuckets) << shift
	return low + (uint64(1)<<shift)/2
}

func (h *hist) add(d time.Duration) {
	v := uint64(0)
	if d > 0 {
		v = uint64(d)
	}
	h.counts[bucket(v)]++
	h.n++
}

func (h *hist) merge(o *hist) {
	for i, c := range o.counts {
		h.counts[i] += c
	}
	h.n += o.n
}

// quantile returns the value below which a fraction q of the samples lie;
// 0 for an empty histogram.
func (h *hist) quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	rank := uint64(q*float64(h.n-1)) + 1 // 1-based rank of the sample
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			return time.Duration(bucketMid(i))
		}
	}
	return time.Duration(bucketMid(histBuckets - 1))
}
