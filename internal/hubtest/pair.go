package hubtest

import (
	"context"
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
