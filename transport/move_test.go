//go:build linux

package transport_test

import (
	"fmt"
	"io"
	"net"
	"reflect"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// exchange checks that a and b carry bytes both ways.
func exchange(t testing.TB, a, b net.Conn) {
	t.Helper()
	for _, c := range []net.Conn{a, b} {
		if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range []struct{ from, to net.Conn }{{a, b}, {b, a}} {
		msg := fmt.Sprintf("from %v to %v", d.from.LocalAddr(), d.from.RemoteAddr())
		if _, err := d.from.Write([]byte(msg)); err != nil {
			t.Fatalf("Write: %v", err)
		}
		buf := make([]byte, len(msg))
		if _, err := io.ReadFull(d.to, buf); err != nil || string(buf) != msg {
			t.Fatalf("read %q, %v; want %q", buf, err, msg)
		}
	}
}

func TestAdoptedConnOutlivesTheOriginal(t *testing.T) {
	h := hubtest.NewHub(t)
	for _, network := range []string{"tcp", "unix"} {
		t.Run("NewConn of a std "+network+" conn works after the original is closed", func(t *testing.T) {
			std, peer := pipe(t, h, network, false, false)
			hc, err := transport.NewConn(h, std)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { hc.Close() })
			if err := std.Close(); err != nil {
				t.Fatal(err)
			}
			if hc.(*transport.Conn).Hub() != h {
				t.Error("adopted conn is not on the hub asked for")
			}
			if !reflect.DeepEqual(hc.LocalAddr(), std.LocalAddr()) || !reflect.DeepEqual(hc.RemoteAddr(), std.RemoteAddr()) {
				t.Errorf("adopted conn addresses %v→%v, original %v→%v", hc.LocalAddr(), hc.RemoteAddr(), std.LocalAddr(), std.RemoteAddr())
			}
			exchange(t, hc, peer)
			// Closing the adopted conn is what ends the connection.
			if err := hc.Close(); err != nil {
				t.Fatal(err)
			}
			if n, err := peer.Read(make([]byte, 1)); n != 0 || err != io.EOF {
				t.Errorf("peer Read after the adopted conn closed = %d, %v; want 0, io.EOF", n, err)
			}
		})
		t.Run("WrapListener of a std "+network+" listener accepts after the original is closed", func(t *testing.T) {
			std, err := net.Listen(network, listenAddr(t, network))
			if err != nil {
				t.Fatal(err)
			}
			if ul, ok := std.(*net.UnixListener); ok {
				ul.SetUnlinkOnClose(false) // keep the path for the adopted listener
			}
			ln, err := transport.WrapListener(h, std)
			if err != nil {
				std.Close()
				t.Fatal(err)
			}
			t.Cleanup(func() { ln.Close() })
			if err := std.Close(); err != nil {
				t.Fatal(err)
			}
			if ln.(*transport.Listener).Hub() != h {
				t.Error("wrapped listener is not on the hub asked for")
			}
			if !reflect.DeepEqual(ln.Addr(), std.Addr()) {
				t.Errorf("wrapped listener Addr %#v, original %#v", ln.Addr(), std.Addr())
			}
			acc := make(chan net.Conn, 1)
			go func() {
				c, _ := ln.Accept()
				acc <- c
			}()
			c, err := (&transport.Dialer{Hub: h}).Dial(network, ln.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			var s net.Conn
			select {
			case s = <-acc:
			case <-time.After(5 * time.Second):
				t.Fatal("Accept on the wrapped listener did not return")
			}
			if s == nil {
				t.Fatal("Accept on the wrapped listener failed")
			}
			t.Cleanup(func() { s.Close() })
			if _, ok := s.(*transport.Conn); !ok {
				t.Errorf("accepted a %T, want a *transport.Conn", s)
			}
			exchange(t, c, s)
		})
	}
	t.Run("WrapListener moves a hub listener onto another hub", func(t *testing.T) {
		h2 := hubtest.NewHub(t)
		ln1 := listen(t, h, "tcp")
		ln, err := transport.WrapListener(h2, ln1)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		if err := ln1.Close(); err != nil {
			t.Fatal(err)
		}
		if got := ln.(*transport.Listener).Hub(); got != h2 {
			t.Errorf("wrapped listener is on hub %p, want %p", got, h2)
		}
		acc := acceptAsync(t, ln)
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if r := await(t, acc, 5*time.Second, "Accept on the moved listener"); r.err != nil {
			t.Fatal(r.err)
		}
	})
	t.Run("NewConn of a hub conn on the same hub returns it as it is", func(t *testing.T) {
		c1, _ := pipe(t, h, "tcp", true, true)
		got, err := transport.NewConn(h, c1)
		if err != nil || got != c1 {
			t.Errorf("NewConn = %p, %v; want %p", got, err, c1)
		}
	})
}
