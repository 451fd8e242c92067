package telemetry

import (
	"context"
	"math/rand/v2"
	"sync"
	"testing"

	"go.opentelemetry.io/otel/metric"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

// histPoint records values into a fresh SDK histogram with sizeBuckets,
// through record, and returns its one data point.
func histPoint(t *testing.T, record func(h metric.Float64Histogram)) metricdata.HistogramDataPoint[float64] {
	t.Helper()
	r := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(r))
	t.Cleanup(func() { mp.Shutdown(context.Background()) })
	h, err := mp.Meter("x").Float64Histogram("h", metric.WithExplicitBucketBoundaries(sizeBuckets...))
	if err != nil {
		t.Fatal(err)
	}
	record(h)
	var rm metricdata.ResourceMetrics
	if err := r.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	return rm.ScopeMetrics[0].Metrics[0].Data.(metricdata.Histogram[float64]).DataPoints[0]
}

// TestLocalHistMatchesTheSDK: sizes counted locally and flushed (in
// several flushes) give the SDK histogram the count, sum and bucket counts
// that recording each size does.
func TestLocalHistMatchesTheSDK(t *testing.T) {
	sizes := make([]int, 5000)
	for i := range sizes {
		switch i % 4 {
		case 0:
			sizes[i] = 1 + rand.IntN(100)
		case 1:
			sizes[i] = 1 + rand.IntN(20000)
		case 2:
			sizes[i] = 1 << rand.IntN(24) // bucket boundaries and beyond the last
		default:
			sizes[i] = 9 + rand.IntN(9<<20)
		}
	}
	want := histPoint(t, func(h metric.Float64Histogram) {
		for _, n := range sizes {
			h.Record(context.Background(), float64(n))
		}
	})
	got := histPoint(t, func(h metric.Float64Histogram) {
		lh := newLocalHist(sizeBuckets)
		rec := func(v float64) { h.Record(context.Background(), v) }
		for i, n := range sizes {
			lh.observe(n)
			if i%777 == 0 {
				lh.flush(rec)
			}
		}
		lh.flush(rec)
		lh.flush(rec) // nothing new: records nothing
	})
	if got.Count != want.Count || got.Sum != want.Sum {
		t.Errorf("count %d sum %v, want %d and %v", got.Count, got.Sum, want.Count, want.Sum)
	}
	for i := range want.BucketCounts {
		if got.BucketCounts[i] != want.BucketCounts[i] {
			t.Errorf("bucket le=%v: %d, want %d", append(sizeBuckets, -1)[i], got.BucketCounts[i], want.BucketCounts[i])
		}
	}
}

// TestLocalHistFlushDuringWrites: flushes that run while the writer
// counts never hand on a torn bucket: the totals come out exact.
func TestLocalHistFlushDuringWrites(t *testing.T) {
	lh := newLocalHist(sizeBuckets)
	var mu sync.Mutex
	var count, sum uint64
	rec := func(v float64) {
		mu.Lock()
		count++
		sum += uint64(v)
		mu.Unlock()
	}
	const n = 200000
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range n {
			lh.observe(1 + i%70000)
		}
	}()
	for flushing := true; flushing; {
		select {
		case <-done:
			flushing = false
		default:
		}
		lh.flush(rec)
	}
	var want uint64
	for i := range n {
		want += uint64(1 + i%70000)
	}
	if count != n || sum != want {
		t.Errorf("flushed %d values summing to %d, want %d summing to %d", count, sum, n, want)
	}
}

// TestLocalHistFoldsBeforeAWordOverflows: a bucket's word holds count and
// sum together, with room for foldEvery of the largest values; far more of
// them into one bucket, flushed once at the end, still come out exact in
// count and sum, in addTotals and in flush.
func TestLocalHistFoldsBeforeAWordOverflows(t *testing.T) {
	const v = 1<<31 - 1 // the largest value observe takes; beyond the last bound
	n := 3*foldEvery + 5
	lh := newLocalHist(sizeBuckets)
	for range n {
		lh.observe(v)
	}
	totals := make([]bucketTotals, len(sizeBuckets)+1)
	lh.addTotals(totals)
	last := totals[len(sizeBuckets)]
	if last.count != uint64(n) || last.sum != uint64(n)*v {
		t.Errorf("addTotals: %d values summing to %d, want %d summing to %d", last.count, last.sum, n, uint64(n)*v)
	}
	var count, sum uint64
	lh.flush(func(x float64) { count++; sum += uint64(x) })
	if count != uint64(n) || sum != uint64(n)*v {
		t.Errorf("flush: %d values summing to %d, want %d summing to %d", count, sum, n, uint64(n)*v)
	}
}
