package telemetry

import (
	"context"
	"errors"

	"go.opentelemetry.io/otel/metric"
)

// Metric names: gRFC A80's for sockets, hubio.hub.* for the loop.
const (
	MetricConnectionsCreated  = "grpc.tcp.connections_created"
	MetricConnectionCount     = "grpc.tcp.connection_count"
	MetricSyscallWrites       = "grpc.tcp.syscall_writes"
	MetricWriteSize           = "grpc.tcp.write_size"
	MetricSyscallReads        = "grpc.tcp.syscall_reads"
	MetricReadSize            = "grpc.tcp.read_size"
	MetricMinRTT              = "grpc.tcp.min_rtt"
	MetricDeliveryRate        = "grpc.tcp.delivery_rate"
	MetricPacketsSent         = "grpc.tcp.packets_sent"
	MetricPacketsRetrans      = "grpc.tcp.packets_retransmitted"
	MetricPacketsSpurious     = "grpc.tcp.packets_spurious_retransmitted"
	MetricRecurringRetransmit = "grpc.tcp.recurring_retransmits"
	MetricBytesSent           = "grpc.tcp.bytes_sent"
	MetricBytesRetrans        = "grpc.tcp.bytes_retransmitted"

	// Unix-socket conns: A80's op metrics under names of their own, so
	// that grpc.tcp.* counts TCP conns only, as A80 (and grpc-go's
	// implementation of it) does.
	MetricUnixConnectionsCreated = "hubio.unix.connections_created"
	MetricUnixConnectionCount    = "hubio.unix.connection_count"
	MetricUnixSyscallWrites      = "hubio.unix.syscall_writes"
	MetricUnixWriteSize          = "hubio.unix.write_size"
	MetricUnixSyscallReads       = "hubio.unix.syscall_reads"
	MetricUnixReadSize           = "hubio.unix.read_size"

	MetricHubUtilization = "hubio.hub.utilization"
	MetricHubBusyTime    = "hubio.hub.busy_time"
	MetricHubIdleTime    = "hubio.hub.idle_time"
	MetricHubLoopDelay   = "hubio.hub.loop.delay"
	MetricHubIterations  = "hubio.hub.loop.iterations"
	MetricHubIterEvents  = "hubio.hub.loop.events"
	MetricHubWakeups     = "hubio.hub.wakeups"
	MetricHubCallbacks   = "hubio.hub.callbacks"
	MetricHubQueueWait   = "hubio.hub.callback.queue_wait"
	MetricHubRegistered  = "hubio.hub.registered_fds"
	MetricHubHandOff     = "hubio.hub.handoff.latency"
)

// Attribute keys.
const (
	AttrHubID        = "hubio.hub.id"        // int: which hub, numbered per Telemetry from 1
	AttrHubIndex     = "hubio.hub.index"     // int: a group's hub's index in its poller.Group (its pprof label hubio.hub); absent outside a group
	AttrWakeup       = "hubio.wakeup"        // "signalled" (wrote the eventfd) or "coalesced"
	AttrCallbackKind = "hubio.callback.kind" // "scheduled" or "timer"
)

// Histogram bucket boundaries (advice; a View can override them).
var (
	secondsBuckets = []float64{1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2e-4, 5e-4,
		1e-3, 2e-3, 5e-3, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5}
	// Sizes: a syscall moves at least one byte, so the first bucket is
	// 1–32 bytes (HTTP/2 control frames: SETTINGS, PING, WINDOW_UPDATE).
	sizeBuckets  = []float64{32, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304}
	rateBuckets  = []float64{1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10, 1e11}
	eventBuckets = []float64{0, 1, 2, 4, 8, 16, 32, 64, 128, 256}
)

// opInstruments are A80's op metrics of one kind of conn; the counters are
// observable, read from Conn.Stats, the sizes flushed from each conn's
// localHist.
type opInstruments struct {
	created, connCount, syscallWrites, syscallReads metric.Int64Observable
	writeSize, readSize                             metric.Float64Histogram
	// writeInfo and readInfo describe writeSize and readSize for
	// SizeHistograms: what the SDK exports for them.
	writeInfo, readInfo histInfo
}

// histInfo is a histogram instrument's identity as an exporter sees it.
type histInfo struct{ name, unit, desc string }

// instruments are a Telemetry's instruments.
type instruments struct {
	// A80 op metrics of TCP conns (grpc.tcp.*) and of unix-socket conns
	// (hubio.unix.*).
	tcp, unix opInstruments

	// A80 TCP_INFO metrics, recorded when a sample is taken.
	minRTT, deliveryRate                                   metric.Float64Histogram
	packetsSent, packetsRetrans, packetsSpurious, recurRTO metric.Int64Counter
	bytesSent, bytesRetrans                                metric.Int64Counter

	// Hub metrics.
	utilization, busy, idle          metric.Float64Observable
	iterations, wakeups, cbs, regFDs metric.Int64Observable
	loopDelay, queueWait, handOff    metric.Float64Histogram
	iterEvents                       metric.Int64Histogram

	regs []metric.Registration
}

func (in *instruments) init(t *Telemetry) error {
	m := t.meter
	var errs []error
	i64c := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	f64h := func(name, unit, desc string, b []float64) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit(unit), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(b...))
		errs = append(errs, err)
		return h
	}
	infos := make(map[string]histInfo, 4) // the size histograms', by name
	sizeH := func(name, desc string) metric.Float64Histogram {
		infos[name] = histInfo{name, "By", desc}
		return f64h(name, "By", desc, sizeBuckets)
	}
	i64oc := func(name, unit, desc string) metric.Int64Observable {
		c, err := m.Int64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	i64ou := func(name, unit, desc string) metric.Int64Observable {
		c, err := m.Int64ObservableUpDownCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	f64oc := func(name, unit, desc string) metric.Float64Observable {
		c, err := m.Float64ObservableCounter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}

	in.tcp = opInstruments{
		created:       i64oc(MetricConnectionsCreated, "{connection}", "Number of TCP connections created."),
		connCount:     i64ou(MetricConnectionCount, "{connection}", "Number of active TCP connections."),
		syscallWrites: i64oc(MetricSyscallWrites, "{syscall}", "The number of times we invoked the sendmsg (or sendmmsg) syscall and wrote data to the TCP socket. Measured at the endpoint level."),
		writeSize:     sizeH(MetricWriteSize, "The number of bytes offered to each syscall_write. Measured at the endpoint level."),
		syscallReads:  i64oc(MetricSyscallReads, "{syscall}", "The number of times we invoked the recvmsg (or recvmmsg or zero copy getsockopt) syscall and read data from the TCP socket. Measured at the endpoint level."),
		readSize:      sizeH(MetricReadSize, "The number of bytes received by each syscall_read. Measured at the endpoint level."),
	}
	in.unix = opInstruments{
		created:       i64oc(MetricUnixConnectionsCreated, "{connection}", "Number of unix-socket connections created."),
		connCount:     i64ou(MetricUnixConnectionCount, "{connection}", "Number of active unix-socket connections."),
		syscallWrites: i64oc(MetricUnixSyscallWrites, "{syscall}", "Write syscalls that wrote data to a unix socket."),
		writeSize:     sizeH(MetricUnixWriteSize, "The number of bytes each write syscall on a unix socket wrote."),
		syscallReads:  i64oc(MetricUnixSyscallReads, "{syscall}", "Read syscalls that read data from a unix socket."),
		readSize:      sizeH(MetricUnixReadSize, "The number of bytes each read syscall on a unix socket returned."),
	}
	in.tcp.writeInfo, in.tcp.readInfo = infos[MetricWriteSize], infos[MetricReadSize]
	in.unix.writeInfo, in.unix.readInfo = infos[MetricUnixWriteSize], infos[MetricUnixReadSize]

	in.minRTT = f64h(MetricMinRTT, "s", "TCP's current estimate of minimum round trip time (RTT). It can be used as an indication of the network health between two endpoints. Corresponds to tcpi_min_rtt from struct tcp_info.", secondsBuckets)
	in.deliveryRate = f64h(MetricDeliveryRate, "By/s", "TCP's most recent measure of the connection's \"non-app-limited\" throughput. The term non-app-limited means that the link is saturated by the application. The delivery rate is only reported when it is non-app-limited. Corresponds to tcpi_delivery_rate from tcp_info when tcpi_delivery_rate_app_limited is false.", rateBuckets)
	in.packetsSent = i64c(MetricPacketsSent, "{packet}", "Total packets sent by TCP including retransmissions and spurious retransmissions. Corresponds to tcpi_data_segs_out from struct tcp_info.")
	in.packetsRetrans = i64c(MetricPacketsRetrans, "{packet}", "Total packets sent by TCP except those sent for the first time. A packet may be retransmitted multiple times and will be counted multiple times as retransmitted. Retransmission counts include spurious retransmissions. Corresponds to tcpi_total_retrans from struct tcp_info.")
	in.packetsSpurious = i64c(MetricPacketsSpurious, "{packet}", "Total packets retransmitted by TCP that were later found to be unnecessary. These packets are acknowledged for the second time or more. Multiple spurious retransmissions for the same packet are counted multiple times. Corresponds to tcpi_dsack_dups from struct tcp_info.")
	in.recurRTO = i64c(MetricRecurringRetransmit, "{packet}", "The number of times the latest TCP packet (TCP sequence) was retransmitted due to expiration of TCP retransmission timer (RTO), and not acknowledged at the time the connection was closed. Corresponds to tcpi_retransmits at connection close time.")
	in.bytesSent = i64c(MetricBytesSent, "By", "Total bytes sent by TCP including retransmissions and spurious retransmissions. Corresponds to tcpi_bytes_sent from struct tcp_info.")
	in.bytesRetrans = i64c(MetricBytesRetrans, "By", "Total bytes sent by TCP except those sent for the first time. A byte sequence may be retransmitted multiple times and will be counted multiple times as retransmitted. Retransmission counts include spurious retransmissions. Corresponds to tcpi_bytes_retrans from struct tcp_info.")

	g, err := m.Float64ObservableGauge(MetricHubUtilization, metric.WithUnit("1"),
		metric.WithDescription("Event-loop utilization over the last 10 s (sampled on the hub every second; whatever reader collects): time the hub goroutine was busy over the time it was busy or parked waiting for events (Node's ELU)."))
	errs = append(errs, err)
	in.utilization = g
	in.busy = f64oc(MetricHubBusyTime, "s", "Time the hub goroutine spent running (not parked waiting for events) since it was instrumented.")
	in.idle = f64oc(MetricHubIdleTime, "s", "Time the hub goroutine spent parked waiting for events since it was instrumented.")
	in.iterations = i64oc(MetricHubIterations, "{iteration}", "Loop iterations: epoll_wait calls by the hub goroutine.")
	in.iterEvents = func() metric.Int64Histogram {
		h, err := m.Int64Histogram(MetricHubIterEvents, metric.WithUnit("{event}"),
			metric.WithDescription("Events returned by epoll_wait, its own wakeup included: one poll in 16 (hubio.hub.loop.iterations counts them all)."),
			metric.WithExplicitBucketBoundaries(eventBuckets...))
		errs = append(errs, err)
		return h
	}()
	in.wakeups = i64oc(MetricHubWakeups, "{wakeup}", "Requests to wake the hub (Schedule, timer changes, Close): signalled ones wrote its eventfd, coalesced ones found a wake-up pending.")
	in.cbs = i64oc(MetricHubCallbacks, "{callback}", "Callbacks the hub goroutine ran: scheduled (Schedule) or timer (AfterFunc and deadlines).")
	in.regFDs = i64ou(MetricHubRegistered, "{fd}", "File descriptors registered with the hub.")
	in.loopDelay = f64h(MetricHubLoopDelay, "s", "How late timers ran: time from the earliest due timer's expiry to the hub running it.", secondsBuckets)
	in.queueWait = f64h(MetricHubQueueWait, "s", "Time the oldest callback of each batch waited in the hub's queue before it ran.", secondsBuckets)
	in.handOff = f64h(MetricHubHandOff, "s", "Sampled hand-off latency: from the hub making a parked waiter runnable to that waiter running again.", secondsBuckets)

	if err := errors.Join(errs...); err != nil {
		return err
	}
	r1, err := m.RegisterCallback(t.conns.observe(t), in.tcp.created, in.tcp.connCount, in.tcp.syscallWrites, in.tcp.syscallReads,
		in.unix.created, in.unix.connCount, in.unix.syscallWrites, in.unix.syscallReads)
	if err != nil {
		return err
	}
	r2, err := m.RegisterCallback(t.hubs.observe(t), in.utilization, in.busy, in.idle,
		in.iterations, in.wakeups, in.cbs, in.regFDs)
	if err != nil {
		r1.Unregister()
		return err
	}
	in.regs = []metric.Registration{r1, r2}
	return nil
}

func (in *instruments) unregister() {
	for _, r := range in.regs {
		r.Unregister()
	}
}

// bg is the context of every measurement: the hub and syscall paths carry
// none.
var bg = context.Background()
