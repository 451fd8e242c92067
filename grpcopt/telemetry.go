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
	t := c.telemetry()
	if t == nil {
		return
	}
	if c.Group != nil {
		t.InstrumentGroup(c.Group) // a closed hub is skipped; the conn's own is checked below
	}
	if t.InstrumentHub(hc.Hub()) == nil {
		t.InstrumentConn(hc)
	}
}

// telemetry returns the Telemetry the Config records through (its conns
// and its Admission's listeners alike): nil with NoTelemetry, by default
// (neither Metrics, MeterProvider nor Telemetry set), or when the provider
// refused the instruments.
func (c Config) telemetry() *telemetry.Telemetry {
	if c.NoTelemetry {
		return nil
	}
	if c.Telemetry != nil {
		return c.Telemetry
	}
	if c.MeterProvider == nil && !c.Metrics {
		return nil // off by default: see Config.Metrics
	}
	t, err := telemetry.ForProvider(c.MeterProvider)
	if err != nil {
		return nil
	}
	return t
}
