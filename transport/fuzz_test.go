package transport_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// FuzzSegments sends a byte stream cut into arbitrary pieces (split drives
// the write sizes) and reads it back with arbitrary buffer sizes (split
// again, from the other end): what arrives must be the stream, intact and
// in order, then io.EOF.
func FuzzSegments(f *testing.F) {
	f.Add([]byte("hello, hub"), []byte{1, 2, 3})
	f.Add(bytes.Repeat([]byte{0xab}, 70000), []byte{255, 0, 7})
	f.Add([]byte{}, []byte{})
	f.Add([]byte{0}, []byte{0, 0, 0})
	h, err := poller.New()
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { h.Close() })
	ln, err := transport.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { ln.Close() })
	d := transport.Dialer{Hub: h}
	f.Fuzz(func(t *testing.T, data, split []byte) {
		accepted := make(chan net.Conn, 1)
		go func() {
			c, err := ln.Accept()
			if err != nil {
				accepted <- nil
				return
			}
			accepted <- c
		}()
		c, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		s := <-accepted
		if s == nil {
			t.Fatal("accept failed")
		}
		defer s.Close()
		s.SetDeadline(time.Now().Add(30 * time.Second))
		c.SetDeadline(time.Now().Add(30 * time.Second))
		size := func(i int) int {
			if len(split) == 0 {
				return 1 << 16
			}
			return 1 + int(split[i%len(split)])*int(split[(i+1)%len(split)]+1)
		}
		werr := make(chan error, 1)
		go func() {
			rest := data
			for i := 0; len(rest) > 0; i++ {
				n := min(size(i), len(rest))
				if _, err := c.Write(rest[:n]); err != nil {
					werr <- err
					return
				}
				rest = rest[n:]
			}
			werr <- c.(*transport.Conn).CloseWrite()
		}()
		var got []byte
		for i := len(split) - 1; ; i++ {
			buf := make([]byte, size(i))
			n, err := s.Read(buf)
			got = append(got, buf[:n]...)
			if err == io.EOF {
				break
			}
			if err != nil {
				t.Fatal(err)
			}
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Fatalf("got %d bytes, sent %d: stream differs", len(got), len(data))
		}
	})
}
