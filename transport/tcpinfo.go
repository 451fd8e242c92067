package transport

import (
	"syscall"
	"time"
)

// TCPInfo is the part of a TCP socket's kernel state (Linux's struct
// tcp_info, read with getsockopt TCP_INFO) that gRFC A80's metrics use.
// Counters are cumulative over the connection's life.
type TCPInfo struct {
	State       uint8         // tcpi_state (1 is ESTABLISHED)
	RTT         time.Duration // tcpi_rtt: smoothed round-trip time
	MinRTT      time.Duration // tcpi_min_rtt: minimum round-trip time seen
	Retransmits uint8         // tcpi_retransmits: RTO expiries of the unacknowledged head

	// DeliveryRate is tcpi_delivery_rate, in bytes per second: the most
	// recent delivery rate sample. DeliveryRateAppLimited is
	// tcpi_delivery_rate_app_limited: the sample was limited by the
	// application, not the network, and A80 does not report it.
	DeliveryRate           uint64
	DeliveryRateAppLimited bool

	PacketsSent                  uint32 // tcpi_data_segs_out: data segments sent, retransmissions included
	PacketsRetransmitted         uint32 // tcpi_total_retrans
	PacketsSpuriousRetransmitted uint32 // tcpi_dsack_dups
	BytesSent                    uint64 // tcpi_bytes_sent, retransmissions included
	BytesRetransmitted           uint64 // tcpi_bytes_retrans
	BytesAcked                   uint64 // tcpi_bytes_acked
	BytesReceived                uint64 // tcpi_bytes_received
}

// TCPInfo reads the conn's TCP_INFO. A unix socket has none: the error
// then wraps syscall.EOPNOTSUPP.
func (c *Conn) TCPInfo() (TCPInfo, error) {
	if !c.isTCP() {
		return TCPInfo{}, c.opErr("get", syscall.EOPNOTSUPP)
	}
	var info TCPInfo
	var ierr error
	err := c.fd.control(func(s int) error {
		info, ierr = tcpInfo(s)
		return nil
	})
	if err == nil {
		err = ierr
	}
	if err != nil {
		return TCPInfo{}, c.opErr("get", err)
	}
	return info, nil
}
