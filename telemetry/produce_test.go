//go:build linux

package telemetry_test

import (
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// TestSizeHistogramsAfterProduceSizes: once ProduceSizes is called, the
// SDK's size histograms record nothing, and SizeHistograms reports every
// syscall's size, cumulatively, the closed conns' included. (Its output
// against the SDK's, series by series, is tested in telemetry/sdkproducer.)
func TestSizeHistogramsAfterProduceSizes(t *testing.T) {
	tel, r := newTelemetry(t)
	tel.ProduceSizes()
	h := hubtest.NewHub(t)
	c, s := pair(t, h, "tcp")
	for _, x := range []*transport.Conn{c, s} {
		if err := tel.InstrumentConn(x); err != nil {
			t.Fatal(err)
		}
	}
	written := hubtest.Pump(t, c, s, chunks...)
	written += hubtest.Pump(t, s, c, 10, 20)

	m := r.collect()
	for _, name := range []string{telemetry.MetricWriteSize, telemetry.MetricReadSize} {
		if n, _, _, _ := histStats(m[name]); n != 0 {
			t.Errorf("the SDK's %s recorded %d values after ProduceSizes", name, n)
		}
	}
	check := func(step string) {
		t.Helper()
		cs, ss := c.Stats(), s.Stats()
		want := map[string][2]uint64{
			telemetry.MetricWriteSize: {cs.Writes + ss.Writes, uint64(written)},
			telemetry.MetricReadSize:  {cs.Reads + ss.Reads, uint64(written)},
		}
		hs := tel.SizeHistograms()
		if len(hs) != 2 {
			t.Fatalf("%s: %d size histograms, want 2 (TCP write and read)", step, len(hs))
		}
		for _, sh := range hs {
			w, ok := want[sh.Name]
			if !ok || len(sh.Points) != 1 || sh.Unit != "By" || sh.Description == "" {
				t.Fatalf("%s: unexpected histogram %+v", step, sh)
			}
			p := sh.Points[0]
			var inBuckets uint64
			for _, b := range p.BucketCounts {
				inBuckets += b
			}
			if p.Count != w[0] || inBuckets != w[0] || p.Sum != w[1] || len(p.BucketCounts) != len(sh.Bounds)+1 {
				t.Errorf("%s: %s counts %d (buckets %d) summing to %d, want %d summing to %d",
					step, sh.Name, p.Count, inBuckets, p.Sum, w[0], w[1])
			}
		}
	}
	check("open")
	c.Close()
	s.Close()
	check("closed")
}
