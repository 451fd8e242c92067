//go:build linux

package transport_test

import (
	"fmt"
	"io"
	"log"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// A listener and a dialer on one hub: every wait of both conns goes
// through the hub's event loop.
func Example() {
	h, err := poller.New()
	if err != nil {
		log.Fatal(err)
	}
	defer h.Close()
	ln, err := transport.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		io.Copy(c, c) // echo until the client half-closes
	}()
	d := transport.Dialer{Hub: h}
	c, err := d.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("hello, hub"))
	c.(*transport.Conn).CloseWrite()
	reply, _ := io.ReadAll(c)
	fmt.Printf("%s\n", reply)
	// Output: hello, hub
}
