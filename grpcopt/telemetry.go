package grpcopt

import (
	"github.com/hubio/hubio/telemetry"
	"github.com/hubio/hubio/transport"
)

// instrument makes a new hub conn, and its hub, report metrics as the
// Config says (by default not at all; Metrics: through
// otel.GetMeterProvider()). With a Group,
// every live hub of it is instrumented from the first conn on, each
// labelled with its index (telemetry.AttrHubIndex), so an idle hub of the
// group reports too. Metrics never fail a connection: an error here
// (instruments the provider refused) leaves the conn uninstrumented.
func (c Config) instrument(hc *transport.Conn) {
	if c.NoTelemetry {
		return
	}
	t := c.Telemetry
	if t == nil {
		if c.MeterProvider == nil && !c.Metrics {
			return // off by default: see Config.Metrics
		}
		var err error
		if t, err = telemetry.ForProvider(c.MeterProvider); err != nil {
			return
		}
	}
	if c.Group != nil {
		t.InstrumentGroup(c.Group) // a closed hub is skipped; the conn's own is checked below
	}
	if t.InstrumentHub(hc.Hub()) == nil {
		t.InstrumentConn(hc)
	}
}
