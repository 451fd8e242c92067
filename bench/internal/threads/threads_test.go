//go:build linux

package threads

import (
	"context"
	"errors"
	"io"
	"net"
	"testing"
	"time"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// pair returns a connected client and server conn.
func pair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	accepted := make(chan net.Conn, 1)
	errc := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			errc <- err
			return
		}
		accepted <- c
	}()
	client, err = Dial(context.Background(), l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Close() })
	select {
	case server = <-accepted:
	case err := <-errc:
		t.Fatal(err)
	}
	t.Cleanup(func() { server.Close() })
	return client, server
}

func TestBytesWrittenOnOneSideAreReadOnTheOther(t *testing.T) {
	client, server := pair(t)
	msg := make([]byte, 1<<20) // more than a socket buffer: Write must loop
	for i := range msg {
		msg[i] = byte(i)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := client.Write(msg)
		errc <- err
	}()
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(server, got); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	for i := range got {
		if got[i] != msg[i] {
			t.Fatalf("byte %d = %d, want %d", i, got[i], msg[i])
		}
	}
}

func TestReadReturnsEOFWhenThePeerCloses(t *testing.T) {
	client, server := pair(t)
	client.Close()
	if n, err := server.Read(make([]byte, 8)); n != 0 || err != io.EOF {
		t.Fatalf("Read = %d, %v; want 0, io.EOF", n, err)
	}
}

func TestCloseUnblocksABlockedRead(t *testing.T) {
	_, server := pair(t)
	errc := make(chan error, 1)
	go func() {
		_, err := server.Read(make([]byte, 8))
		errc <- err
	}()
	// Close may run before Read starts or while it is blocked; both
	// must end in net.ErrClosed.
	server.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Read after Close: %v, want net.ErrClosed", err)
	}
	if err := server.Close(); !errors.Is(err, net.ErrClosed) {
		t.Fatalf("second Close: %v, want net.ErrClosed", err)
	}
}

func TestCloseUnblocksABlockedAccept(t *testing.T) {
	l, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := l.Accept()
		errc <- err
	}()
	l.Close()
	if err := <-errc; !errors.Is(err, net.ErrClosed) {
		t.Fatalf("Accept after Close: %v, want net.ErrClosed", err)
	}
}

func TestDeadlinesAreAcceptedAndIgnored(t *testing.T) {
	client, _ := pair(t)
	if err := client.SetDeadline(time.Now()); err != nil {
		t.Fatal(err)
	}
}
