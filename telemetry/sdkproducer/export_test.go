package sdkproducer

import "github.com/hubio/hubio/telemetry"

// ReaderForTest returns a Producer of t's size histograms that leaves the
// SDK path on (no ProduceSizes): what it produces is what the SDK's
// histograms hold once a collection has flushed the same counts.
func ReaderForTest(t *telemetry.Telemetry) *Producer {
	p := &Producer{}
	p.t.Store(t)
	return p
}
