// Package telemetry exports what hubs and hub conns count as OpenTelemetry
// metrics: gRFC A80's TCP metrics (grpc.tcp.*) for each conn, and event-loop
// metrics (hubio.hub.*) for each hub. Unix-socket conns report A80's op
// metrics as hubio.unix.*, so that grpc.tcp.* counts TCP conns only.
//
// Packages poller and transport import no metrics library. They keep plain
// counters (Hub.Stats, Hub.LoopTime, Conn.Stats, Conn.TCPInfo) and report
// distributions to an observer only when one is set (Hub.SetObserver,
// Conn.SetObserver). This package is that observer: counters are read by
// observable instruments when a reader collects, distributions are recorded
// into histograms, and TCP_INFO is sampled on the hub's own timers with
// A80's algorithm (first sample at a random 10–110% of the interval,
// re-armed the same way, one last sample when the conn closes).
//
// With WithWriteLatency, A80's per-write metrics (grpc.tcp.sender_latency,
// grpc.tcp.transfer_latency) are collected too: one write in a period is
// timestamped with SO_TIMESTAMPING and the hub reads the timestamps from
// the socket's error queue (transport.Conn.EnableWriteTimestamps).
//
// grpcopt instruments every hub and conn it creates once its Config turns
// telemetry on (Metrics: through otel.GetMeterProvider(); or MeterProvider,
// or Telemetry); it is off by default, for what it costs with an SDK
// installed at low load (docs/telemetry.md). Programs that
// use transport and poller directly call InstrumentHub and InstrumentConn
// (or the methods of a Telemetry built with New).
//
// Cost: a conn counts each syscall's size in its own histogram (one atomic
// addition), handed to the SDK's grpc.tcp.write_size and read_size when a
// reader collects, so no SDK code runs on the syscall path; a hub pays a
// few plain operations per wake-up and a clock read on one in 16
// (poller.Hub.LoopTime times callbacks exactly and samples the rest of a
// pass's busy time; telemetry's periodic timers wait in runtime timers,
// not in the hub's heap, which the hub would check at every wake-up). Recording allocates nothing. docs/telemetry.md gives the measured
// cost.
package telemetry
