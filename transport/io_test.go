//go:build linux

package transport_test

import (
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

func TestFullDuplexTransferKeepsEveryByte(t *testing.T) {
	const size = 64 << 20
	h := hubtest.NewHub(t)
	for _, p := range pairings {
		t.Run(p.name+" moves 64 MiB each way at once", func(t *testing.T) {
			c1, c2 := pipe(t, h, "tcp", p.hubListen, p.hubDial)
			deadline := time.Now().Add(30 * time.Second)
			for _, c := range []net.Conn{c1, c2} {
				if err := c.SetDeadline(deadline); err != nil {
					t.Fatal(err)
				}
			}
			type sums struct {
				sent, got [sha256.Size]byte
				n         int64
				err       error
			}
			done := make(chan sums, 2)
			stream := func(from, to net.Conn, seed uint64) {
				var s sums
				var wg sync.WaitGroup
				wg.Add(1)
				go func() {
					defer wg.Done()
					h := sha256.New()
					s.n, s.err = readToEOF(h, to, make([]byte, 32<<10))
					copy(s.got[:], h.Sum(nil))
				}()
				var werr error
				rng := rand.New(rand.NewPCG(seed, seed))
				src := rand.NewChaCha8([32]byte{byte(seed)})
				hw := sha256.New()
				buf := make([]byte, 256<<10)
				for left := size; left > 0 && werr == nil; {
					chunk := buf[:min(left, 1+rng.IntN(len(buf)))]
					src.Read(chunk)
					hw.Write(chunk)
					var n int
					n, werr = from.Write(chunk)
					if werr == nil && n != len(chunk) {
						werr = fmt.Errorf("short write %d of %d with no error", n, len(chunk))
					}
					left -= len(chunk)
				}
				copy(s.sent[:], hw.Sum(nil))
				if werr == nil {
					werr = from.(interface{ CloseWrite() error }).CloseWrite()
				} else {
					from.Close() // end the reader's wait at once
				}
				wg.Wait()
				if s.err == nil {
					s.err = werr
				}
				done <- s
			}
			go stream(c1, c2, 1)
			go stream(c2, c1, 2)
			for range 2 {
				s := <-done
				if s.err != nil {
					t.Fatal(s.err)
				}
				if s.n != size {
					t.Errorf("reader got %d bytes before EOF, want %d", s.n, size)
				}
				if s.sent != s.got {
					t.Errorf("SHA-256 of the bytes read %x differs from that of the bytes written %x", s.got, s.sent)
				}
			}
		})
	}
}

// TestWriteBuffersSkipsEmptyBuffers: empty buffers, alone or between data,
// are skipped, and WriteBuffers returns instead of spinning on writev of
// nothing.
func TestWriteBuffersSkipsEmptyBuffers(t *testing.T) {
	h := hubtest.NewHub(t)
	c1, c2 := pipe(t, h, "tcp", true, true)
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

// countingPool is a transport.BufferPool that counts its loans.
type countingPool struct{ gets, puts int }

func (p *countingPool) Get(n int) *[]byte { p.gets++; b := make([]byte, n); return &b }
func (p *countingPool) Put(*[]byte)       { p.puts++ }

// TestReadPooledSizes: size 0 is Read of an empty buffer (0, nil, no
// syscall, no buffer); a negative size is an error that takes nothing from
// the pool; neither disturbs the data waiting to be read.
func TestReadPooledSizes(t *testing.T) {
	h := hubtest.NewHub(t)
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
