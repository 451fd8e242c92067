package main

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/hubio/hubio/bench/internal/sysstat"
)

// The storm runs in a process of its own (the same binary with -storm-run),
// so that its clients' CPU is not the steady clients' and what the steady
// clients see is the server's doing (and the machine's: on a small machine
// the storm's CPU still competes with everything).
//
// A storm client is a TCP conn that does what a gRPC client does first: it
// connects from 127.0.0.2, writes the HTTP/2 client preface and an empty
// SETTINGS frame, and waits for the server's first frame (its SETTINGS).
// That frame is success; a reset, EOF or the deadline is a failure, timed
// from the start of the dial. A gRPC client fails its RPC with Unavailable
// on the same reset (see grpcopt's TestAdmissionPerPeerRefusesAGRPCClientFast);
// the raw client keeps the storm's own CPU small.

// clientPreface is the HTTP/2 client connection preface followed by an empty
// SETTINGS frame (length 0, type 4, flags 0, stream 0).
var clientPreface = append([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"), 0, 0, 0, 4, 0, 0, 0, 0, 0)

// runStorm is the storm process: n clients dial target at once; each
// outcome is printed as "KIND NANOSECONDS" (ok, reset, deadline, other),
// then "done"; conns are held until stdin closes.
func runStorm(target string, n int, deadline time.Duration) error {
	sysstat.RaiseFileLimit()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}, Timeout: deadline}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	conns := make([]net.Conn, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			start := time.Now()
			kind := "ok"
			c, err := d.Dial("tcp", target)
			if err == nil {
				conns[i] = c
				c.SetDeadline(start.Add(deadline))
				if _, err = c.Write(clientPreface); err == nil {
					_, err = io.ReadFull(c, make([]byte, 9))
				}
			}
			if err != nil {
				kind = stormKind(err)
			}
			took := time.Since(start)
			mu.Lock()
			fmt.Fprintf(out, "%s %d\n", kind, took)
			mu.Unlock()
		}()
	}
	wg.Wait()
	fmt.Fprintln(out, "done")
	out.Flush()
	os.Stdin.Read(make([]byte, 1)) // hold the conns until the parent closes stdin
	for _, c := range conns {
		if c != nil {
			c.Close()
		}
	}
	return nil
}

// stormKind sorts a storm client's error.
func stormKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE), errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, syscall.ECONNREFUSED):
		return "reset"
	case errors.As(err, &ne) && ne.Timeout():
		return "deadline"
	}
	return "other"
}
