package grpcopt_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/testdata"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// serverSetup is one way of building a gRPC server: which listener it
// serves and whether its credentials come from grpcopt.ServerOption.
type serverSetup struct {
	name      string
	hubListen bool // grpcopt.Listen instead of net.Listen
	option    bool // grpcopt.ServerOption around the inner credentials
	limit     bool // the listener wrapped in netutil.LimitListener
}

// usesHub reports whether the server's conns end up on the hub.
func (s serverSetup) usesHub() bool { return s.hubListen || s.option }

var (
	stdServer       = serverSetup{name: "a standard server"}
	optionServer    = serverSetup{name: "ServerOption over a standard listener", option: true}
	listenServer    = serverSetup{name: "a Listen listener without ServerOption", hubListen: true}
	listenOptServer = serverSetup{name: "a Listen listener with ServerOption", hubListen: true, option: true}
	limitOptServer  = serverSetup{name: "ServerOption over netutil.LimitListener", option: true, limit: true}
	allServers      = []serverSetup{stdServer, optionServer, listenServer, listenOptServer, limitOptServer}
	hubServers      = []serverSetup{optionServer, listenServer, listenOptServer, limitOptServer}
)

// clientSetup is one way of dialing: package net's dialer or a hub's.
type clientSetup struct {
	name string
	hub  bool
}

var (
	stdClient  = clientSetup{name: "a standard client"}
	hubClient  = clientSetup{name: "a hub client", hub: true}
	allClients = []clientSetup{stdClient, hubClient}
)

// listen announces on network and address, on h when s says so.
func (s serverSetup) listen(t testing.TB, h *poller.Hub, network, address string) net.Listener {
	t.Helper()
	var lis net.Listener
	var err error
	if s.hubListen {
		lis, err = grpcopt.Listen(h, network, address)
	} else {
		lis, err = net.Listen(network, address)
	}
	if err != nil {
		t.Fatalf("listening on %s %q: %v", network, address, err)
	}
	if s.limit {
		lis = netutil.LimitListener(lis, 1000)
	}
	return lis
}

// serverOptions returns the credential option s calls for: ServerOption
// around inner, grpc.Creds(inner), or none for a plain insecure server.
func (s serverSetup) serverOptions(h *poller.Hub, inner credentials.TransportCredentials) []grpc.ServerOption {
	switch {
	case s.option:
		return []grpc.ServerOption{grpcopt.ServerOption(h, inner)}
	case inner != nil:
		return []grpc.ServerOption{grpc.Creds(inner)}
	}
	return nil
}

// serve runs srv on lis until the test ends; the cleanup stops srv and
// waits for Serve to return.
func serve(t testing.TB, srv *grpc.Server, lis net.Listener) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	t.Cleanup(func() {
		srv.Stop()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve returned %v, want nil after Stop", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return within 10s of Stop")
		}
	})
}

// serveEcho serves the echo service on lis, with opts, until the test ends
// (see serve); it returns the server.
func serveEcho(t testing.TB, lis net.Listener, opts ...grpc.ServerOption) *grpc.Server {
	t.Helper()
	srv := grpc.NewServer(opts...)
	testutil.RegisterEchoServer(srv, nil)
	serve(t, srv, lis)
	return srv
}

// startEcho starts a server built as s, on h, serving the echo service on a
// TCP loopback port with opts; it returns the server and its address.
func startEcho(t testing.TB, s serverSetup, h *poller.Hub, opts ...grpc.ServerOption) (*grpc.Server, string) {
	t.Helper()
	lis := s.listen(t, h, "tcp", "127.0.0.1:0")
	return serveEcho(t, lis, append(s.serverOptions(h, nil), opts...)...), lis.Addr().String()
}

// dial returns a client conn to target, closed when the test ends. With a
// hub it dials through grpcopt.DialOption.
func dial(t testing.TB, target string, h *poller.Hub, creds credentials.TransportCredentials, opts ...grpc.DialOption) *grpc.ClientConn {
	t.Helper()
	if creds == nil {
		creds = insecure.NewCredentials()
	}
	all := []grpc.DialOption{grpc.WithTransportCredentials(creds)}
	if h != nil {
		all = append(all, grpcopt.DialOption(h))
	}
	cc, err := grpc.NewClient(target, append(all, opts...)...)
	if err != nil {
		t.Fatalf("grpc.NewClient(%q): %v", target, err)
	}
	t.Cleanup(func() { cc.Close() })
	return cc
}

// countingDialer dials on h through grpcopt (as DialOption does) and counts
// the connections grpc-go makes: a conn the server cuts shows up as a
// second dial.
func countingDialer(h *poller.Hub, dials *atomic.Int64) grpc.DialOption {
	cfg := grpcopt.Config{Hub: h}
	return grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
		dials.Add(1)
		return cfg.Dial(ctx, addr)
	})
}

// shortTempDir returns a directory for unix sockets whose path stays well
// under the 108-byte limit of sun_path (t.TempDir embeds the test name).
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "hubio")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

var abstractSeq atomic.Int64

// abstractName returns a unix abstract socket name unique to this process.
func abstractName() string {
	return fmt.Sprintf("hubio-grpcopt-%d-%d", os.Getpid(), abstractSeq.Add(1))
}

// tlsCreds returns grpc-go's test server credentials and client
// credentials that trust them.
func tlsCreds(t testing.TB) (server, client credentials.TransportCredentials) {
	t.Helper()
	server, err := credentials.NewServerTLSFromFile(testdata.Path("x509/server1_cert.pem"), testdata.Path("x509/server1_key.pem"))
	if err != nil {
		t.Fatalf("loading the test server certificate: %v", err)
	}
	client, err = credentials.NewClientTLSFromFile(testdata.Path("x509/server_ca_cert.pem"), "x.test.example.com")
	if err != nil {
		t.Fatalf("loading the test CA certificate: %v", err)
	}
	return server, client
}

// unixSocketPath returns a fresh socket path in a short temp dir.
func unixSocketPath(t testing.TB) string {
	t.Helper()
	return filepath.Join(shortTempDir(t), "s")
}

// isTimeout reports whether err is a net.Error timeout.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// readSilentConn dials addr over package net, sends nothing, and reads what
// the server sends until it closes the conn (nil: EOF) or 10s pass (the
// read deadline's error); it closes its end before returning. n counts the
// bytes read (the server's SETTINGS).
func readSilentConn(t testing.TB, addr string) (n int64, err error) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	return io.Copy(io.Discard, c)
}
