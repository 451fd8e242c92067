package transport_test

import (
	"fmt"
	"io"
	"net"
	"sync"
	"testing"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// benchPair returns a connected TCP pair over loopback: both ends standard
// conns (h nil), or both ends conns on hub h.
func benchPair(b *testing.B, h *poller.Hub) (client, server net.Conn) {
	b.Helper()
	var ln net.Listener
	var err error
	if h != nil {
		ln, err = transport.Listen(h, "tcp", "127.0.0.1:0")
	} else {
		ln, err = net.Listen("tcp", "127.0.0.1:0")
	}
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			b.Error(err)
		}
		accepted <- c
	}()
	if h != nil {
		client, err = (&transport.Dialer{Hub: h}).Dial("tcp", ln.Addr().String())
	} else {
		client, err = net.Dial("tcp", ln.Addr().String())
	}
	if err != nil {
		b.Fatal(err)
	}
	server = <-accepted
	b.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

// benchHub returns a new hub for the hub transport, nil for package net.
func benchHub(b *testing.B, hub bool) *poller.Hub {
	if !hub {
		return nil
	}
	return hubtest.NewHub(b)
}

// reportHub adds the hub's readiness events and loop iterations per op
// since before (what one op costs the hub, not just how long it took).
func reportHub(b *testing.B, h *poller.Hub, before poller.Stats) {
	if h == nil {
		return
	}
	st := h.Stats()
	b.ReportMetric(float64(st.Events-before.Events)/float64(b.N), "events/op")
	b.ReportMetric(float64(st.Iterations-before.Iterations)/float64(b.N), "polls/op")
}

var transports = []struct {
	name string
	hub  bool
}{{"std", false}, {"hub", true}}

// BenchmarkPingPong measures 64-byte round trips: the client writes 64
// bytes, the server echoes them, the client reads them back. With several
// pairs, each pair runs in its own goroutines at once, all on one hub (as
// the model has it: one hub owns every socket); ns/op is per round trip
// across all pairs.
func BenchmarkPingPong(b *testing.B) {
	for _, pairs := range []int{1, 16} {
		for _, tr := range transports {
			b.Run(fmt.Sprintf("pairs=%d/%s", pairs, tr.name), func(b *testing.B) {
				h := benchHub(b, tr.hub)
				type pair struct{ c, s net.Conn }
				ps := make([]pair, pairs)
				for i := range ps {
					ps[i].c, ps[i].s = benchPair(b, h)
				}
				var wg sync.WaitGroup
				for _, p := range ps {
					wg.Add(1)
					go func() {
						defer wg.Done()
						buf := make([]byte, 64)
						for {
							if _, err := io.ReadFull(p.s, buf); err != nil {
								return
							}
							if _, err := p.s.Write(buf); err != nil {
								return
							}
						}
					}()
				}
				b.ReportAllocs()
				b.SetBytes(64)
				var before poller.Stats
				if h != nil {
					before = h.Stats()
				}
				b.ResetTimer()
				var cw sync.WaitGroup
				for i, p := range ps {
					n := b.N / pairs
					if i < b.N%pairs {
						n++
					}
					cw.Add(1)
					go func() {
						defer cw.Done()
						buf := make([]byte, 64)
						for range n {
							if _, err := p.c.Write(buf); err != nil {
								b.Error(err)
								return
							}
							if _, err := io.ReadFull(p.c, buf); err != nil {
								b.Error(err)
								return
							}
						}
					}()
				}
				cw.Wait()
				b.StopTimer()
				reportHub(b, h, before)
				for _, p := range ps {
					p.c.Close()
				}
				wg.Wait()
			})
		}
	}
}

// BenchmarkStream measures one-way throughput with 32 KiB writes and reads.
func BenchmarkStream(b *testing.B) {
	const size = 32 << 10
	for _, tr := range transports {
		b.Run(tr.name, func(b *testing.B) {
			c, s := benchPair(b, benchHub(b, tr.hub))
			done := make(chan int64)
			go func() {
				buf := make([]byte, size)
				var n int64
				for {
					m, err := s.Read(buf)
					n += int64(m)
					if err != nil {
						done <- n
						return
					}
				}
			}()
			buf := make([]byte, size)
			b.ReportAllocs()
			b.SetBytes(size)
			b.ResetTimer()
			for range b.N {
				if _, err := c.Write(buf); err != nil {
					b.Fatal(err)
				}
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			if n := <-done; n != int64(b.N)*size {
				b.Fatalf("read %d bytes, wrote %d", n, int64(b.N)*size)
			}
			b.StopTimer()
		})
	}
}

// BenchmarkBuffers writes 8 buffers of 512 bytes per op: package net's
// net.Buffers.WriteTo (writev), the hub conn's WriteBuffers (writev), and
// the hub conn's plain Write per buffer, which is what net.Buffers.WriteTo
// does on a conn outside package net.
func BenchmarkBuffers(b *testing.B) {
	const n, size = 8, 512
	for _, tc := range []struct {
		name string
		hub  bool
		vec  bool
	}{{"std/writev", false, true}, {"hub/writev", true, true}, {"hub/write-each", true, false}} {
		b.Run(tc.name, func(b *testing.B) {
			c, s := benchPair(b, benchHub(b, tc.hub))
			done := make(chan struct{})
			go func() {
				io.Copy(io.Discard, s)
				close(done)
			}()
			bufs := make([][]byte, n)
			for i := range bufs {
				bufs[i] = make([]byte, size)
			}
			vv := make(net.Buffers, n) // writes consume it: refilled each op
			b.ReportAllocs()
			b.SetBytes(n * size)
			for b.Loop() {
				copy(vv, bufs)
				v := vv
				var err error
				switch {
				case !tc.vec:
					for _, p := range bufs {
						if _, err = c.Write(p); err != nil {
							break
						}
					}
				case tc.hub:
					_, err = c.(*transport.Conn).WriteBuffers(&v)
				default:
					_, err = v.WriteTo(c)
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			c.(interface{ CloseWrite() error }).CloseWrite()
			<-done
		})
	}
}
