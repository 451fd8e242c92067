//go:build linux

package transport

import (
	"os"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// appLimitedOffset is the byte of struct tcp_info that holds the bit field
// tcpi_delivery_rate_app_limited (bit 0; tcpi_fastopen_client_fail follows):
// after tcpi_options (offset 5) and the window-scale byte (offset 6).
// unix.TCPInfo leaves both bit-field bytes out as padding before Rto, so
// they are read through the struct's memory, which the kernel fills.
const appLimitedOffset = 7

// The layout assumption above, checked at compile time: Rto follows the
// two unnamed bytes at offset 8.
var _ [unsafe.Offsetof(unix.TCPInfo{}.Rto) - 8]struct{}
var _ [8 - unsafe.Offsetof(unix.TCPInfo{}.Rto)]struct{}

// tcpInfo reads TCP_INFO from socket s.
func tcpInfo(s int) (TCPInfo, error) {
	ti, err := unix.GetsockoptTCPInfo(s, unix.IPPROTO_TCP, unix.TCP_INFO)
	if err != nil {
		return TCPInfo{}, os.NewSyscallError("getsockopt", err)
	}
	appLimited := *(*uint8)(unsafe.Add(unsafe.Pointer(ti), appLimitedOffset))&1 != 0
	us := func(v uint32) time.Duration { return time.Duration(v) * time.Microsecond }
	return TCPInfo{
		State:                        ti.State,
		RTT:                          us(ti.Rtt),
		MinRTT:                       us(ti.Min_rtt),
		Retransmits:                  ti.Retransmits,
		DeliveryRate:                 ti.Delivery_rate,
		DeliveryRateAppLimited:       appLimited,
		PacketsSent:                  ti.Data_segs_out,
		PacketsRetransmitted:         ti.Total_retrans,
		PacketsSpuriousRetransmitted: ti.Dsack_dups,
		BytesSent:                    ti.Bytes_sent,
		BytesRetransmitted:           ti.Bytes_retrans,
		BytesAcked:                   ti.Bytes_acked,
		BytesReceived:                ti.Bytes_received,
	}, nil
}

// observeClose tells the conn's observer, if any, that it is closing, with
// its last TCP_INFO. Close calls it after marking the fd closed and before
// dropping its own reference, so sysfd is still open.
func (fd *netFD) observeClose() {
	fd.stats.closing(func() *TCPInfo {
		info, err := tcpInfo(fd.sysfd)
		if err != nil {
			return nil // a unix socket, or a socket in no state to say
		}
		return &info
	})
}
