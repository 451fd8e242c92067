//go:build linux

package transport_test

import (
	"io"
	"math"
	"net"
	"testing"
	"time"

	"github.com/hubio/hubio/transport"
)

// TestWriteBuffersSkipsEmptyBuffers: empty buffers, alone or between data,
// are skipped, and WriteBuffers returns instead of spinning on writev of
// nothing.
func TestWriteBuffersSkipsEmptyBuffers(t *testing.T) {
	h := newHub(t)
	c1, c2, stop, err := makePipe(t, h, "tcp", true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	c := c1.(*transport.Conn)
	done := make(chan error, 1)
	go func() {
		empty := net.Buffers{nil, {}, nil}
		if n, err := c.WriteBuffers(&empty); n != 0 || err != nil || len(empty) != 0 {
			done <- err
			return
		}
		mixed := net.Buffers{nil, []byte("ab"), {}, nil, []byte("cd"), nil}
		n, err := c.WriteBuffers(&mixed)
		if n != 4 || err == nil && len(mixed) != 0 {
			t.Errorf("WriteBuffers(mixed) = %d, %v, left %d buffers", n, err, len(mixed))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("WriteBuffers of empty buffers did not return")
	}
	got := make([]byte, 4)
	if _, err := io.ReadFull(c2, got); err != nil || string(got) != "abcd" {
		t.Fatalf("read %q, %v", got, err)
	}
}

// TestFarFutureDeadlineDoesNotFire: a deadline centuries away (beyond what
// time.Until can express) must not be taken as one in the past.
func TestFarFutureDeadlineDoesNotFire(t *testing.T) {
	h := newHub(t)
	c1, c2, stop, err := makePipe(t, h, "tcp", true, true)
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
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
