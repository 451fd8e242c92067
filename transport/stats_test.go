//go:build linux

package transport_test

import (
	"errors"
	"io"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// ioRecorder is a transport.IOObserver that keeps what it is told.
type ioRecorder struct {
	mu            sync.Mutex
	reads, writes []int
	closes        []*transport.TCPInfo
}

func (r *ioRecorder) ObserveRead(n int)  { r.mu.Lock(); r.reads = append(r.reads, n); r.mu.Unlock() }
func (r *ioRecorder) ObserveWrite(n int) { r.mu.Lock(); r.writes = append(r.writes, n); r.mu.Unlock() }
func (r *ioRecorder) ObserveClose(i *transport.TCPInfo) {
	r.mu.Lock()
	r.closes = append(r.closes, i)
	r.mu.Unlock()
}

func sum(ns []int) (s int) {
	for _, n := range ns {
		s += n
	}
	return s
}

func TestStatsAndObserverCountEverySyscall(t *testing.T) {
	for _, network := range []string{"tcp", "unix"} {
		t.Run(network, func(t *testing.T) {
			h := newTestHub(t)
			c1, c2 := pipe(t, h, network, true, true)
			w, r := c1.(*transport.Conn), c2.(*transport.Conn)
			wrec, rrec := &ioRecorder{}, &ioRecorder{}
			w.SetObserver(wrec)
			r.SetObserver(rrec)

			// Fill the socket so that the writer must wait, then drain.
			filled := fillWrite(t, w)
			got := async(func() (int, error) {
				n, err := io.CopyN(io.Discard, r, int64(filled+4<<20))
				return int(n), err
			})
			if _, err := w.Write(make([]byte, 1<<20)); err != nil {
				t.Fatal(err)
			}
			v := net.Buffers{make([]byte, 1<<20), make([]byte, 2<<20)}
			if _, err := w.WriteBuffers(&v); err != nil {
				t.Fatal(err)
			}
			if res := await(t, got, 30*time.Second, "reading everything written"); res.err != nil {
				t.Fatal(res.err)
			}
			total := filled + 4<<20

			ws, rs := w.Stats(), r.Stats()
			if ws.BytesWritten != uint64(total) || sum(wrec.writes) != total || ws.Writes != uint64(len(wrec.writes)) {
				t.Errorf("writer: Stats %+v, observer %d writes of %d bytes; wrote %d", ws, len(wrec.writes), sum(wrec.writes), total)
			}
			if rs.BytesRead != uint64(total) || sum(rrec.reads) != total || rs.Reads != uint64(len(rrec.reads)) {
				t.Errorf("reader: Stats %+v, observer %d reads of %d bytes; read %d", rs, len(rrec.reads), sum(rrec.reads), total)
			}
			if ws.WriteWaits == 0 {
				t.Errorf("writer past a full socket buffer never waited: %+v", ws)
			}
			w.Close()
			w.Close()
			if len(wrec.closes) != 1 {
				t.Fatalf("ObserveClose ran %d times for two Close calls, want 1", len(wrec.closes))
			}
			if info := wrec.closes[0]; (info != nil) != (network == "tcp") {
				t.Errorf("%s conn closed with TCP_INFO %+v", network, info)
			} else if info != nil && info.BytesSent < uint64(total) {
				t.Errorf("last TCP_INFO says %d bytes sent, want ≥ %d", info.BytesSent, total)
			}
		})
	}
}

func TestTCPInfo(t *testing.T) {
	h := newTestHub(t)
	c1, _ := pipe(t, h, "tcp", true, true)
	c := c1.(*transport.Conn)
	if _, err := c.Write([]byte("hello")); err != nil {
		t.Fatal(err)
	}
	info, err := c.TCPInfo()
	if err != nil {
		t.Fatal(err)
	}
	if info.State != 1 || info.BytesSent < 5 || info.MinRTT <= 0 {
		t.Errorf("TCPInfo of an established loopback conn after a write: %+v", info)
	}
	u1, _ := pipe(t, h, "unix", true, true)
	_, err = u1.(*transport.Conn).TCPInfo()
	checkOpErr(t, err, "get", syscall.EOPNOTSUPP)
	c.Close()
	if _, err := c.TCPInfo(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("TCPInfo after Close: %v, want net.ErrClosed", err)
	}
}

func newTestHub(t *testing.T) *poller.Hub {
	t.Helper()
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return h
}
