package hubtest

import (
	"context"
	"io"
	"path/filepath"
	"testing"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// ConnPair returns two connected hub conns on h, the dialed one first,
// both closed at cleanup. network is "tcp" (on loopback) or "unix" (a
// socket file in the test's temporary directory).
func ConnPair(t testing.TB, h *poller.Hub, network string) (dialed, accepted *transport.Conn) {
	t.Helper()
	addr := "127.0.0.1:0"
	if network == "unix" {
		addr = filepath.Join(t.TempDir(), "s")
	}
	l, err := transport.ListenHub(h, network, addr)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	type res struct {
		c   *transport.Conn
		err error
	}
	acc := make(chan res, 1)
	go func() {
		c, err := l.AcceptHub()
		acc <- res{c, err}
	}()
	d := transport.Dialer{Hub: h}
	c, err := d.DialHub(context.Background(), network, l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	a := <-acc
	if a.err != nil {
		t.Fatal(a.err)
	}
	t.Cleanup(func() { a.c.Close() })
	return c, a.c
}

// Pump writes chunks of the given sizes (zero bytes) to w while a goroutine
// reads them all from r, and returns the bytes written once every one has
// been read: no read or write of either is in flight after it.
func Pump(t testing.TB, w io.Writer, r io.Reader, chunks ...int) int {
	t.Helper()
	total := 0
	for _, n := range chunks {
		total += n
	}
	done := make(chan error, 1)
	go func() {
		_, err := io.CopyN(io.Discard, r, int64(total))
		done <- err
	}()
	for _, n := range chunks {
		if _, err := w.Write(make([]byte, n)); err != nil {
			t.Fatal(err)
		}
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	return total
}
