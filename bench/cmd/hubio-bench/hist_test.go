package main

import (
	"testing"
	"time"
)

func TestHistogramBucketsAreContiguousAndOrdered(t *testing.T) {
	prev := -1
	for _, v := range []uint64{0, 1, 63, 64, 65, 127, 128, 129, 255, 256, 1 << 20, 1<<20 + 1, 1<<63 - 1, 1<<64 - 1} {
		b := bucket(v)
		if b < prev || b >= histBuckets {
			t.Fatalf("bucket(%d) = %d after %d (of %d)", v, b, prev, histBuckets)
		}
		prev = b
	}
}

func TestHistogramQuantilesAreWithinTheBucketError(t *testing.T) {
	var h hist
	for i := 1; i <= 1000; i++ {
		h.add(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {0.999, 999 * time.Microsecond}} {
		got := h.quantile(c.q)
		if diff := float64(got-c.want) / float64(c.want); diff < -0.02 || diff > 0.02 {
			t.Errorf("quantile(%v) = %v, want %v within 2%%", c.q, got, c.want)
		}
	}
}
