package testutil

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

// Echo is an echo service, and the services given with WithServices,
// served on a hub and a client connected to it, all in this process, on a
// loopback TCP address or a unix socket.
//
// Ownership: Echo owns Server, ClientConn, the listener and, when it
// created it, Hub; Close (or, with StartEcho, the test's cleanup) releases
// them. A hub given with WithHub stays the caller's and is left open.
// Fields are set by NewEcho and never change; read them from any goroutine.
type Echo struct {
	// Hub runs the server's and the client's conns and the faults' timers.
	Hub *poller.Hub
	// Server serves the echo service and the services given with
	// WithServices. Serve has started, so no other service can be
	// registered on it: give yours with WithServices.
	Server *grpc.Server
	// Addr is the listener's address: a *net.TCPAddr on 127.0.0.1 or a
	// *net.UnixAddr in a temporary directory.
	Addr net.Addr
	// Target is the gRPC target ClientConn dials: "127.0.0.1:port" or
	// "unix:///path". Use it to dial more clients (with a grpcopt
	// DialOption, or ClientFaults.DialOption).
	Target string
	// ClientConn is the client's channel; it connects on the first RPC.
	// Give it to the generated client of a service registered with
	// WithServices (pb.NewGreeterClient(e.ClientConn)).
	ClientConn *grpc.ClientConn
	// Client calls the echo service over ClientConn.
	Client *EchoClient
	// ServerFaults wraps every conn the server accepts, with
	// WithServerFaults; nil otherwise.
	ServerFaults *FaultListener
	// ClientFaults wraps every conn the client dials, with
	// WithClientFaults; nil otherwise.
	ClientFaults *FaultDialer

	ownHub    bool
	dir       string     // temporary directory of the unix socket, removed by Close
	served    chan error // Serve's result
	closeOnce sync.Once
	closeErr  error
}

// EchoOption configures NewEcho and StartEcho.
type EchoOption func(*echoConfig)

type echoConfig struct {
	hub          *poller.Hub
	unix         bool
	serverOpts   []grpc.ServerOption
	dialOpts     []grpc.DialOption
	srv          *EchoServer
	register     []func(grpc.ServiceRegistrar)
	wrap         func(net.Listener) net.Listener
	serverFaults *Faults
	clientFaults *Faults
}

// WithHub runs the harness on h, which stays the caller's: Close leaves it
// open. Without it, the harness creates a hub and closes it on Close. Close
// h only after the harness: a server whose hub is closed first fails its
// Accept, and Close reports that error.
func WithHub(h *poller.Hub) EchoOption { return func(c *echoConfig) { c.hub = h } }

// WithUnixSocket serves on a unix socket in a new temporary directory
// instead of 127.0.0.1:0; Close removes the directory.
func WithUnixSocket() EchoOption { return func(c *echoConfig) { c.unix = true } }

// WithServerOptions adds options to grpc.NewServer, after the harness's
// own (grpcopt.ServerOption, unless WithListenerWrapper is used), so a
// grpc.Creds given here replaces the harness's insecure credentials.
func WithServerOptions(opts ...grpc.ServerOption) EchoOption {
	return func(c *echoConfig) { c.serverOpts = append(c.serverOpts, opts...) }
}

// WithDialOptions adds options to grpc.NewClient, after the harness's own
// (insecure credentials and the hub's context dialer), so they may replace
// either.
func WithDialOptions(opts ...grpc.DialOption) EchoOption {
	return func(c *echoConfig) { c.dialOpts = append(c.dialOpts, opts...) }
}

// WithServices registers the caller's own services on the harness's
// server, beside the echo service, before it serves: register is called
// once, from NewEcho, with Echo.Server, typically to call generated
// registration functions (pb.RegisterGreeterServer(s, impl)). The services
// then get everything the harness gives the echo service: the hub, the
// faults of WithServerFaults and WithClientFaults, Echo.ClientConn to call
// them through, and the cleanup and leak checks of StartEcho. Given more
// than once, each register is called, in order.
func WithServices(register func(s grpc.ServiceRegistrar)) EchoOption {
	return func(c *echoConfig) { c.register = append(c.register, register) }
}

// WithEchoServer serves srv (its hooks observe or change the replies)
// instead of a plain echo.
func WithEchoServer(srv *EchoServer) EchoOption { return func(c *echoConfig) { c.srv = srv } }

// WithListenerWrapper gives the server wrap(l) instead of l, the listener
// from grpcopt.Listen (or, with WithServerFaults, its FaultListener). The
// wrapper owns l: closing what it returns must close l. Accepted conns
// then need not be hub conns, so the server runs without
// grpcopt.ServerOption (the conns beneath are still on the hub).
func WithListenerWrapper(wrap func(net.Listener) net.Listener) EchoOption {
	return func(c *echoConfig) { c.wrap = wrap }
}

// WithServerFaults wraps the server's listener in a FaultListener with
// faults f, exposed as Echo.ServerFaults. The server keeps
// grpcopt.ServerOption, which hands FaultConns on unchanged (see
// FaultListener).
func WithServerFaults(f Faults) EchoOption { return func(c *echoConfig) { c.serverFaults = &f } }

// WithClientFaults dials the client's conns through a FaultDialer with
// faults f, exposed as Echo.ClientFaults.
func WithClientFaults(f Faults) EchoOption { return func(c *echoConfig) { c.clientFaults = &f } }

// NewEcho starts an echo service (and the services of WithServices) on a
// hub and connects a client to it. The
// server runs grpc.Server.Serve on a goroutine of its own until Close. The
// caller must call Close; in tests, StartEcho does it for you.
func NewEcho(opts ...EchoOption) (e *Echo, err error) {
	var cfg echoConfig
	for _, o := range opts {
		o(&cfg)
	}
	e = &Echo{Hub: cfg.hub, served: make(chan error, 1)}
	defer func() {
		if err != nil {
			e.release()
		}
	}()
	if e.Hub == nil {
		if e.Hub, err = poller.New(); err != nil {
			return nil, fmt.Errorf("testutil: echo hub: %w", err)
		}
		e.ownHub = true
	}

	network, address := "tcp", "127.0.0.1:0"
	if cfg.unix {
		// A short path of our own: t.TempDir's can pass the 108-byte limit.
		if e.dir, err = os.MkdirTemp("", "hubio-echo-"); err != nil {
			return nil, err
		}
		network, address = "unix", filepath.Join(e.dir, "echo.sock")
	}
	l, err := grpcopt.Listen(e.Hub, network, address)
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil && e.Server == nil {
			l.Close() // Stop closes it once Serve has it
		}
	}()
	e.Addr = l.Addr()
	e.Target = e.Addr.String()
	if cfg.unix {
		e.Target = "unix://" + e.Addr.String()
	}
	var sopts []grpc.ServerOption
	if cfg.serverFaults != nil {
		e.ServerFaults = NewFaultListener(e.Hub, l, *cfg.serverFaults)
		l = e.ServerFaults
	}
	if cfg.wrap != nil {
		l = cfg.wrap(l)
	}
	if cfg.wrap == nil {
		sopts = append(sopts, grpcopt.ServerOption(e.Hub, nil))
	}
	e.Server = grpc.NewServer(append(sopts, cfg.serverOpts...)...)
	RegisterEchoServer(e.Server, cfg.srv)
	for _, register := range cfg.register {
		register(e.Server)
	}
	go func() { e.served <- e.Server.Serve(l) }()

	dial := grpcopt.DialOption(e.Hub)
	if cfg.clientFaults != nil {
		e.ClientFaults = NewFaultDialer(e.Hub, *cfg.clientFaults)
		dial = e.ClientFaults.DialOption()
	}
	dopts := append([]grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials()), dial}, cfg.dialOpts...)
	if e.ClientConn, err = grpc.NewClient(e.Target, dopts...); err != nil {
		return nil, err
	}
	e.Client = NewEchoClient(e.ClientConn)
	return e, nil
}

// StartEcho is NewEcho for tests: it fails t at once if the harness cannot
// start, and registers a t.Cleanup that calls Close (reporting its error
// with t.Error). To check for leaks, call VerifyNoLeaks(t) before it (see
// VerifyNoLeaks), or use VerifyTestMain.
func StartEcho(t testing.TB, opts ...EchoOption) *Echo {
	t.Helper()
	e, err := NewEcho(opts...)
	if err != nil {
		t.Fatalf("testutil: starting the echo harness: %v", err)
	}
	forget := trackHarness(t, e)
	t.Cleanup(func() {
		forget()
		if err := e.Close(); err != nil {
			t.Errorf("testutil: closing the echo harness: %v", err)
		}
	})
	return e
}

// Close closes the client, stops the server with grpc.Server.Stop (which
// closes the listener and every server conn and cancels running RPCs),
// waits for Serve to return, closes the hub if the harness created it and
// removes the unix socket's directory. It returns the first error; later
// calls return the same.
func (e *Echo) Close() error {
	e.closeOnce.Do(func() { e.closeErr = e.release() })
	return e.closeErr
}

// release tears down whatever NewEcho got to.
func (e *Echo) release() error {
	var errs []error
	if e.ClientConn != nil {
		errs = append(errs, e.ClientConn.Close())
	}
	if e.Server != nil {
		e.Server.Stop()
		if err := <-e.served; err != nil && !errors.Is(err, grpc.ErrServerStopped) {
			errs = append(errs, fmt.Errorf("testutil: echo server: %w", err))
		}
	}
	if e.ownHub && e.Hub != nil {
		errs = append(errs, e.Hub.Close())
	}
	if e.dir != "" {
		errs = append(errs, os.RemoveAll(e.dir))
	}
	return errors.Join(errs...)
}
