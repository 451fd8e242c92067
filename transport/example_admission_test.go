//go:build linux

package transport_test

import (
	"errors"
	"fmt"
	"log"
	"net"
	"syscall"

	"github.com/hubio/hubio/transport"
)

// A listener that takes at most one conn per peer address: the second
// conn from 127.0.0.1 is accepted and reset at once, so its client fails
// fast instead of waiting in the backlog.
func ExampleNewAdmission() {
	a, err := transport.NewAdmission(transport.AdmissionPolicy{MaxConnsPerPeer: 1})
	if err != nil {
		log.Fatal(err)
	}
	ln, err := transport.ListenHub(nil, "tcp", "127.0.0.1:0")
	if err != nil {
		log.Fatal(err)
	}
	defer ln.Close()
	ln.SetAdmission(a)

	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		log.Fatal(err)
	}
	defer first.Close()
	second, err := net.Dial("tcp", ln.Addr().String())
	if err == nil {
		defer second.Close()
	}
	accepted := make(chan net.Conn)
	go func() {
		for {
			c, err := ln.Accept() // admits the first, resets the second
			if err != nil {
				close(accepted)
				return
			}
			accepted <- c
		}
	}()
	c := <-accepted
	defer c.Close()
	if err == nil {
		_, err = second.Read(make([]byte, 1))
	}
	fmt.Println("second conn reset:", errors.Is(err, syscall.ECONNRESET))
	s := a.Stats()
	fmt.Println("open:", s.Open, "refused per peer:", s.RefusedPeer)
	// Output:
	// second conn reset: true
	// open: 1 refused per peer: 1
}
