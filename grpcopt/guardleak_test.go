//go:build linux

package grpcopt_test

import (
	"net"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
)

// patientCreds waits for an optional first byte under the conn's deadline
// (as a protocol sniffer might) and succeeds whether or not one came.
type patientCreds struct {
	credentials.TransportCredentials
}

func (p patientCreds) ServerHandshake(c net.Conn) (net.Conn, credentials.AuthInfo, error) {
	c.Read(make([]byte, 1)) // fails with a timeout once the guard fires
	return p.TransportCredentials.ServerHandshake(c)
}

func (p patientCreds) Clone() credentials.TransportCredentials { return p }

// TestConnectionTimeoutGuardReleasesHubConn: when the
// ConnectionTimeout guard fires and grpc-go then closes only the raw conn
// (NewServerTransport fails writing its SETTINGS, unbuffered with
// grpc.WriteBufferSize(0), before it installs its deferred Close), the hub
// conn is closed too: the peer sees the conn end, and the hub's
// registrations and the process's fds return to what they were.
func TestConnectionTimeoutGuardReleasesHubConn(t *testing.T) {
	hubtest.Check(t)
	for _, ss := range []serverSetup{optionServer, limitOptServer} {
		t.Run("on "+ss.name, func(t *testing.T) {
			h := hubtest.NewHubUnchecked(t)
			lis := ss.listen(t, h, "tcp", "127.0.0.1:0")
			srv := grpc.NewServer(grpcopt.ServerOption(h, patientCreds{insecure.NewCredentials()}),
				grpc.ConnectionTimeout(200*time.Millisecond), grpc.WriteBufferSize(0))
			serve(t, srv, lis)
			fds := hubtest.CountFDs(t)
			if n, err := readSilentConn(t, lis.Addr().String()); err != nil {
				t.Fatalf("the silent conn was not closed by the server (read %d bytes): %v", n, err)
			}
			if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Registered == 0 }) {
				t.Fatalf("hub registrations after the guard fired: %d, want 0", h.Stats().Registered)
			}
			if !hubtest.WaitFor(10*time.Second, func() bool { return hubtest.CountFDs(t) <= fds }) {
				t.Fatalf("fds: %d, want at most %d", hubtest.CountFDs(t), fds)
			}
		})
	}
}
