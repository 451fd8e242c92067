//go:build linux

package grpcopt_test

import (
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
)

// dispatcher is inner credentials that take every conn away from gRPC: an
// echo goroutine serves it until the peer leaves, then closes it.
type dispatcher struct {
	credentials.TransportCredentials
	wg *sync.WaitGroup
}

func (d dispatcher) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		defer c.Close()
		io.Copy(c, c)
	}()
	return nil, nil, credentials.ErrConnDispatched
}

func (d dispatcher) Clone() credentials.TransportCredentials { return d }

// TestDispatchedConnStaysOpen: when the inner credentials dispatch a conn
// (credentials.ErrConnDispatched), the conn they were handed stays open and
// echoes bytes, on the hub, and its close releases everything.
func TestDispatchedConnStaysOpen(t *testing.T) {
	hubtest.Check(t)
	for _, ss := range []serverSetup{optionServer, listenOptServer, limitOptServer} {
		t.Run("on "+ss.name, func(t *testing.T) {
			h := hubtest.NewHubUnchecked(t)
			lis := ss.listen(t, h, "tcp", "127.0.0.1:0")
			listening := h.Stats().Registered
			var wg sync.WaitGroup
			srv := grpc.NewServer(grpcopt.ServerOption(h, dispatcher{insecure.NewCredentials(), &wg}))
			serve(t, srv, lis)
			c, err := net.Dial("tcp", lis.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(10 * time.Second))
			for _, msg := range []string{"hello", "again"} {
				if _, err := c.Write([]byte(msg)); err != nil {
					t.Fatal(err)
				}
				got := make([]byte, len(msg))
				if _, err := io.ReadFull(c, got); err != nil || string(got) != msg {
					t.Fatalf("echo over the dispatched conn: %q, %v; want %q", got, err, msg)
				}
			}
			if got := h.Stats().Registered; got != listening+1 {
				t.Fatalf("hub registrations: %d, want the dispatched conn's", got)
			}
			c.Close()
			wg.Wait()
			if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Registered == listening }) {
				t.Fatalf("hub registrations after the dispatched conn closed: %d, want %d", h.Stats().Registered, listening)
			}
		})
	}
}
