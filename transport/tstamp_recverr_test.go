//go:build linux

package transport_test

import (
	"encoding/binary"
	"errors"
	"net"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// TestICMPErrorReachesWaiterWithRecvErr: a program that turns IP_RECVERR
// on a conn whose error queue the hub reads for write timestamps still
// sees an ICMP error. On an established TCP socket the kernel records an
// ICMP error in the socket error (SO_ERROR) and queues nothing (it queues
// ICMP errors only while connecting), and the hub never reads the socket
// error: the reader parked on the conn fails with EHOSTUNREACH, with
// timestamps on as with them off. (Dequeuing an ICMP message from the
// error queue would clear the socket error; timestamp messages do not.)
// The ICMP message is forged on a raw socket, so the test needs
// CAP_NET_RAW and CAP_NET_ADMIN (TCP_REPAIR, to read the send sequence).
func TestICMPErrorReachesWaiterWithRecvErr(t *testing.T) {
	for _, stamps := range []bool{false, true} {
		name := "timestamps off"
		if stamps {
			name = "timestamps on"
		}
		t.Run(name, func(t *testing.T) {
			h := hubtest.NewHub(t)
			c1, c2 := pipe(t, h, "tcp", true, true)
			c := c1.(*transport.Conn)
			raw, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_ICMP)
			if err != nil {
				t.Skipf("raw ICMP socket: %v (needs CAP_NET_RAW)", err)
			}
			t.Cleanup(func() { unix.Close(raw) })
			if stamps {
				if err := c.EnableWriteTimestamps(1, &latencyRecorder{}); err != nil {
					t.Fatal(err)
				}
			}
			// Traffic both ways, so timestamps sit on the error queue.
			for range 3 {
				if _, err := c.Write([]byte("ping")); err != nil {
					t.Fatal(err)
				}
				if _, err := c2.Read(make([]byte, 4)); err != nil {
					t.Fatal(err)
				}
			}
			var seq uint32
			rc, err := c.SyscallConn()
			if err != nil {
				t.Fatal(err)
			}
			var serr error
			rc.Control(func(fd uintptr) {
				s := int(fd)
				if serr = unix.SetsockoptInt(s, unix.IPPROTO_IP, unix.IP_RECVERR, 1); serr != nil {
					return
				}
				// The send sequence: with nothing unacknowledged, the
				// ICMP error must quote snd_una = snd_nxt = write_seq.
				if serr = unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_ON); serr != nil {
					return
				}
				defer unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR, unix.TCP_REPAIR_OFF)
				if serr = unix.SetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_REPAIR_QUEUE, tcpSendQueue); serr != nil {
					return
				}
				var v int
				v, serr = unix.GetsockoptInt(s, unix.IPPROTO_TCP, unix.TCP_QUEUE_SEQ)
				seq = uint32(v)
			})
			if errors.Is(serr, syscall.EPERM) {
				t.Skipf("TCP_REPAIR: %v (needs CAP_NET_ADMIN)", serr)
			}
			if serr != nil {
				t.Fatal(serr)
			}

			got := make(chan error, 1)
			go func() {
				_, err := c.Read(make([]byte, 1))
				got <- err
			}()
			deadline := time.Now().Add(10 * time.Second)
			for c.Stats().ReadWaits == 0 {
				if time.Now().After(deadline) {
					t.Fatal("the reader did not park on the hub in 10 s")
				}
				time.Sleep(time.Millisecond) // polling a condition
			}
			sendHostUnreachable(t, raw, c.LocalAddr().(*net.TCPAddr), c.RemoteAddr().(*net.TCPAddr), seq)
			select {
			case err := <-got:
				if !errors.Is(err, syscall.EHOSTUNREACH) {
					t.Errorf("parked read after an ICMP host unreachable: %v, want EHOSTUNREACH", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("the parked reader was not woken by an ICMP error in 10 s")
			}
			if stamps {
				if s := c.WriteTimestampStats(); s.ErrWakes == 0 {
					t.Errorf("timestamp stats %+v: the error was not seen as one (ErrWakes 0)", s)
				}
			}
		})
	}
}

// tcpSendQueue is TCP_SEND_QUEUE from linux/tcp.h (not in x/sys/unix).
const tcpSendQueue = 2

// sendHostUnreachable sends an ICMP destination-unreachable (host) about
// the TCP segment local → remote with sequence number seq, as a router on
// the path would.
func sendHostUnreachable(t *testing.T, raw int, local, remote *net.TCPAddr, seq uint32) {
	t.Helper()
	msg := make([]byte, 8+20+8)
	msg[0], msg[1] = 3, 1 // destination unreachable, host unreachable
	ip := msg[8:28]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 40)
	ip[8], ip[9] = 64, unix.IPPROTO_TCP
	copy(ip[12:16], local.IP.To4())
	copy(ip[16:20], remote.IP.To4())
	binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	tcp := msg[28:]
	binary.BigEndian.PutUint16(tcp[0:], uint16(local.Port))
	binary.BigEndian.PutUint16(tcp[2:], uint16(remote.Port))
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint16(msg[2:], checksum(msg))
	to := &unix.SockaddrInet4{}
	copy(to.Addr[:], local.IP.To4())
	if err := unix.Sendto(raw, msg, 0, to); err != nil {
		t.Fatal(err)
	}
}

// checksum is the Internet checksum (RFC 1071) of b.
func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}
