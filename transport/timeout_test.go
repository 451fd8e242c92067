//go:build linux

package transport_test

import (
	"fmt"
	"io"
	"math"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/deadline"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

func TestDeadlines(t *testing.T) {
	h := hubtest.NewHub(t)
	hubPair := func(t *testing.T) (*transport.Conn, *transport.Conn) {
		t.Helper()
		c1, c2 := pipe(t, h, "tcp", true, true)
		return c1.(*transport.Conn), c2.(*transport.Conn)
	}

	t.Run("a deadline in the past fails Read and Write at once", func(t *testing.T) {
		c, peer := hubPair(t)
		if _, err := peer.Write([]byte("data waiting")); err != nil {
			t.Fatal(err)
		}
		if err := c.SetDeadline(time.Now().Add(-time.Second)); err != nil {
			t.Fatal(err)
		}
		r := await(t, async(func() (int, error) { return c.Read(make([]byte, 64)) }), time.Second, "Read past its deadline")
		checkTimeout(t, r.err, "read")
		if r.n != 0 {
			t.Errorf("Read past its deadline returned %d bytes", r.n)
		}
		w := await(t, async(func() (int, error) { return c.Write([]byte("x")) }), time.Second, "Write past its deadline")
		checkTimeout(t, w.err, "write")
		if w.n != 0 {
			t.Errorf("Write past its deadline wrote %d bytes", w.n)
		}
		// Clearing the deadline makes the conn usable again; the data is there.
		if err := c.SetDeadline(time.Time{}); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 64)
		n, err := c.Read(buf)
		if err != nil || string(buf[:n]) != "data waiting" {
			t.Errorf("Read after clearing the deadline = %q, %v; want %q", buf[:n], err, "data waiting")
		}
	})

	t.Run("a read deadline in the future fires no earlier than asked", func(t *testing.T) {
		c, _ := hubPair(t)
		const d = 100 * time.Millisecond
		start := time.Now()
		if err := c.SetReadDeadline(start.Add(d)); err != nil {
			t.Fatal(err)
		}
		r := await(t, async(func() (int, error) { return c.Read(make([]byte, 1)) }), 5*time.Second, "Read with a deadline")
		took := time.Since(start)
		checkTimeout(t, r.err, "read")
		if took < d {
			t.Errorf("Read timed out after %v, before its deadline %v", took, d)
		}
	})

	t.Run("a far read deadline moved near while Read is blocked fires", func(t *testing.T) {
		c, _ := hubPair(t)
		if err := c.SetReadDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		reads := async(func() (int, error) { return c.Read(make([]byte, 1)) })
		waitParked(t, 1)
		moved := time.Now()
		if err := c.SetReadDeadline(moved.Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		r := await(t, reads, 5*time.Second, "Read after its deadline moved near")
		checkTimeout(t, r.err, "read")
		if took := time.Since(moved); took < 50*time.Millisecond {
			t.Errorf("Read timed out %v after the move, before the new deadline", took)
		}
	})

	for _, to := range []struct {
		name string
		t    func() time.Time
	}{
		{"far", func() time.Time { return time.Now().Add(time.Hour) }},
		{"zero", func() time.Time { return time.Time{} }},
	} {
		t.Run("a near read deadline moved "+to.name+" while Read is blocked does not fire", func(t *testing.T) {
			c, peer := hubPair(t)
			const near = time.Second
			old := time.Now().Add(near)
			if err := c.SetReadDeadline(old); err != nil {
				t.Fatal(err)
			}
			reads := async(func() (int, error) {
				b := make([]byte, 16)
				n, err := c.Read(b)
				if err == nil && string(b[:n]) != "late data" {
					err = fmt.Errorf("read %q, want %q", b[:n], "late data")
				}
				return n, err
			})
			waitParked(t, 1)
			if err := c.SetReadDeadline(to.t()); err != nil {
				t.Fatal(err)
			}
			if time.Now().After(old) {
				t.Fatalf("the deadline was moved only after it had passed: the machine is too slow for this test")
			}
			select {
			case r := <-reads:
				t.Fatalf("Read returned (%d, %v) at the old deadline", r.n, r.err)
			case <-time.After(time.Until(old) + 300*time.Millisecond):
			}
			if _, err := peer.Write([]byte("late data")); err != nil {
				t.Fatal(err)
			}
			r := await(t, reads, 5*time.Second, "Read after data arrived")
			if r.err != nil {
				t.Fatalf("Read: %v", r.err)
			}
		})
	}

	t.Run("a write deadline fails a Write blocked on a peer that does not read", func(t *testing.T) {
		c, _ := hubPair(t)
		// The deadline must leave the Write time to start on a loaded
		// machine (a Write that starts after it writes nothing, as
		// package net's does): the buffer is allocated first.
		const d = time.Second
		const size = 64 << 20
		buf := make([]byte, size)
		start := time.Now()
		if err := c.SetWriteDeadline(start.Add(d)); err != nil {
			t.Fatal(err)
		}
		w := await(t, async(func() (int, error) { return c.Write(buf) }), 10*time.Second, "Write with a deadline")
		checkTimeout(t, w.err, "write")
		if took := time.Since(start); took < d {
			t.Errorf("Write timed out after %v, before its deadline %v", took, d)
		}
		if w.n <= 0 || w.n >= size {
			t.Errorf("Write reported %d bytes written, want some but not all of %d", w.n, size)
		}
	})

	t.Run("a far write deadline moved near while Write is blocked fires", func(t *testing.T) {
		c, _ := hubPair(t)
		if err := c.SetWriteDeadline(time.Now().Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
		writes := async(func() (int, error) { return c.Write(make([]byte, 64<<20)) })
		waitParked(t, 1)
		if err := c.SetWriteDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		w := await(t, writes, 5*time.Second, "Write after its deadline moved near")
		checkTimeout(t, w.err, "write")
	})

	t.Run("an accept deadline fails Accept", func(t *testing.T) {
		ln := listen(t, h, "tcp")
		if err := ln.SetDeadline(time.Now().Add(50 * time.Millisecond)); err != nil {
			t.Fatal(err)
		}
		r := await(t, acceptAsync(t, ln), 5*time.Second, "Accept with a deadline")
		checkTimeout(t, r.err, "accept")
	})
}

// TestFarFutureDeadlineDoesNotFire: a deadline centuries away (beyond what
// time.Until can express) must not be taken as one in the past.
func TestFarFutureDeadlineDoesNotFire(t *testing.T) {
	h := hubtest.NewHub(t)
	c1, c2 := pipe(t, h, "tcp", true, true)
	for _, far := range []time.Time{time.Now().Add(math.MaxInt64), time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := c1.SetDeadline(far); err != nil {
			t.Fatal(err)
		}
		if _, err := c2.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		var b [1]byte
		if _, err := c1.Read(b[:]); err != nil {
			t.Fatalf("Read with deadline %v: %v", far, err)
		}
		if _, err := c1.Write(b[:]); err != nil {
			t.Fatalf("Write with deadline %v: %v", far, err)
		}
		if _, err := io.ReadFull(c2, b[:]); err != nil {
			t.Fatal(err)
		}
	}
}

// TestReadDeadlineOfAHubConn: internal/deadline.ReadOf, through which
// grpcopt keeps grpc-go's connection timeout for a conn whose hub has
// closed, reads the read deadline set on a hub conn, also after its hub
// closed, and through a wrapper, and no other conn's.
func TestReadDeadlineOfAHubConn(t *testing.T) {
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	peer, c := pipe(t, h, "tcp", true, false) // dialed through package net, accepted on the hub
	if d, ok := deadline.ReadOf(c); !ok || !d.IsZero() {
		t.Fatalf("ReadOf before any deadline = %v, %v; want the zero time, true", d, ok)
	}
	at := time.Now().Add(time.Hour)
	if err := c.SetDeadline(at); err != nil {
		t.Fatal(err)
	}
	h.Close()
	d, ok := deadline.ReadOf(c)
	if !ok || d.Sub(at).Abs() > time.Second {
		t.Fatalf("ReadOf after the hub closed = %v, %v; want about %v, true", d, ok, at)
	}
	if d, ok := deadline.ReadOf(netConnWrapper{c}); !ok || d.Sub(at).Abs() > time.Second {
		t.Fatalf("ReadOf through a wrapper = %v, %v; want about %v, true", d, ok, at)
	}
	if _, ok := deadline.ReadOf(peer); ok {
		t.Fatalf("ReadOf reads a %T, not a hub conn", peer)
	}
}
