//go:build linux

package transport_test

import (
	"errors"
	"net"
	"syscall"
	"testing"

	"github.com/hubio/hubio/transport"
)

// countingPool is a transport.BufferPool that counts its loans.
type countingPool struct{ gets, puts int }

func (p *countingPool) Get(n int) *[]byte { p.gets++; b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.puts++ }

// TestReadPooledSizes: size 0 is Read of an empty buffer (0, nil, no
// syscall, no buffer); a negative size is an error that takes nothing from
// the pool; neither disturbs the data waiting to be read.
func TestReadPooledSizes(t *testing.T) {
	h := newHub(t)
	c1, c2 := pipe(t, h, "tcp", true, true)
	c := c1.(*transport.Conn)
	var pool countingPool

	for _, size := range []int{0, -1} {
		b, n, err := c.ReadPooled(size, &pool)
		if size == 0 && (b != nil || n != 0 || err != nil) {
			t.Errorf("ReadPooled(0) on a live conn = %v, %d, %v, want nil, 0, nil", b, n, err)
		}
		if size < 0 {
			if b != nil || n != 0 {
				t.Errorf("ReadPooled(%d) = %v, %d, want no buffer", size, b, n)
			}
			checkOpErr(t, err, "read", syscall.EINVAL)
		}
	}
	if pool.gets != 0 {
		t.Errorf("ReadPooled with size <= 0 took %d buffers from the pool", pool.gets)
	}

	if _, err := c2.Write([]byte("hub")); err != nil {
		t.Fatal(err)
	}
	b, n, err := c.ReadPooled(8, &pool)
	if err != nil || string((*b)[:n]) != "hub" {
		t.Fatalf("ReadPooled(8) after the size-0 calls = %q, %v, want \"hub\"", (*b)[:n], err)
	}
	pool.Put(b)

	c.Close()
	if _, _, err := c.ReadPooled(0, &pool); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ReadPooled(0) on a closed conn: %v, want net.ErrClosed", err)
	}
}
