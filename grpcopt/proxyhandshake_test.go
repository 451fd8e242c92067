package grpcopt_test

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
)

// TestDialThroughAProxyIgnoresAConnectOKsContentLength: what follows a 200
// response to CONNECT is the tunnel's, even when the proxy (against RFC
// 9110) sends a Content-Length: the dialed conn reads those bytes first.
func TestDialThroughAProxyIgnoresAConnectOKsContentLength(t *testing.T) {
	lis, held := oneShotProxy(t, "HTTP/1.1 200 Connection established\r\nContent-Length: 5\r\n\r\nhello")
	setProxyEnv(t, "http://"+lis.Addr().String(), "")
	var lookups atomic.Int64
	cfg := grpcopt.WithResolver(grpcopt.Config{Hub: hubtest.NewHubUnchecked(t)}, noDNS(&lookups))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := cfg.Dial(ctx, "grpc.test:443")
	if pc, ok := <-held; ok {
		defer pc.Close()
	}
	if err != nil {
		t.Fatalf("Dial: %v", err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got := make([]byte, 5)
	if _, err := io.ReadFull(c, got); err != nil || string(got) != "hello" {
		t.Fatalf("read %q, %v; want the tunnel's first bytes %q", got, err, "hello")
	}
}

// TestDialThroughAProxyThatStallsARefusalsBody: a proxy that refuses the
// CONNECT with a body it never sends does not hold the dial past its
// context's cancellation (nor forever, without a deadline).
func TestDialThroughAProxyThatStallsARefusalsBody(t *testing.T) {
	// The headers promise a body that never comes.
	lis, accepted := oneShotProxy(t, "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 100\r\n\r\n")
	setProxyEnv(t, "http://"+lis.Addr().String(), "")
	var lookups atomic.Int64
	cfg := grpcopt.WithResolver(grpcopt.Config{Hub: hubtest.NewHubUnchecked(t)}, noDNS(&lookups))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	time.AfterFunc(100*time.Millisecond, cancel)
	type result struct {
		c   net.Conn
		err error
	}
	done := make(chan result, 1)
	go func() {
		c, err := cfg.Dial(ctx, "grpc.test:443")
		done <- result{c, err}
	}()
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		if c, ok := <-accepted; ok {
			c.Close() // release the dial
		}
		<-done
		t.Fatal("Dial still blocked 10 s after its context was cancelled, reading a refusal's body")
	}
	if c, ok := <-accepted; ok {
		c.Close()
	}
	if r.c != nil {
		r.c.Close()
	}
	var opErr *net.OpError
	if !errors.As(r.err, &opErr) || opErr.Op != "proxyconnect" || !strings.Contains(r.err.Error(), "407") {
		t.Fatalf("Dial: %v, want a proxyconnect *net.OpError naming the 407", r.err)
	}
}

// oneShotProxy listens on loopback for one CONNECT, reads its request
// headers, answers with response as it is, and hands the conn over on the
// channel (closed without a conn if the accept fails). The listener is
// closed at cleanup; the receiver closes the conn.
func oneShotProxy(t *testing.T, response string) (net.Listener, <-chan net.Conn) {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lis.Close() })
	conns := make(chan net.Conn, 1)
	go func() {
		c, err := lis.Accept()
		if err != nil {
			close(conns)
			return
		}
		br := bufio.NewReader(c)
		for {
			line, err := br.ReadString('\n')
			if err != nil || line == "\r\n" {
				break
			}
		}
		c.Write([]byte(response))
		conns <- c
	}()
	return lis, conns
}
