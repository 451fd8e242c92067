package main

import (
	"fmt"
	"net"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/bench/internal/threads"
	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

// Transport names, as given to -transports.
const (
	transportStd     = "std"
	transportHub     = "hub"
	transportThreads = "threads"
)

func knownTransport(name string) bool {
	return name == transportStd || name == transportThreads || groupSize(name) > 0
}

// endpoints is one transport's server listener and options and its client
// dial options, set up inside a child process.
type endpoints struct {
	lis        net.Listener
	serverOpts []grpc.ServerOption
	dialOpts   []grpc.DialOption
	// close releases what the transport holds beyond the listener and the
	// conns (the hubs). Call it after the server and clients are closed.
	close func()
	// hubs are the hub transport's hubs (server's, client's); none for the
	// other transports.
	hubs []*poller.Hub
}

// hubStats sums the Stats of e's hubs.
func (e *endpoints) hubStats() poller.Stats {
	var sum poller.Stats
	for _, h := range e.hubs {
		st := h.Stats()
		sum.Iterations += st.Iterations
		sum.Events += st.Events
	}
	return sum
}

// target is the address grpc.NewClient dials; passthrough hands it to the
// dialer as it is, without a resolver.
func (e *endpoints) target() string { return "passthrough:///" + e.lis.Addr().String() }

// newEndpoints sets up transport name on 127.0.0.1.
//
// The hub transport uses two hubs from poller.New, one for the server and
// one for the client, as a server and a client in two processes would have:
// a shared hub would run both sides' readiness through one loop goroutine,
// which no real deployment does.
func newEndpoints(name string) (*endpoints, error) {
	e := &endpoints{
		dialOpts: []grpc.DialOption{grpc.WithTransportCredentials(insecure.NewCredentials())},
		close:    func() {},
	}
	const addr = "127.0.0.1:0"
	var err error
	switch name {
	case transportStd:
		e.lis, err = net.Listen("tcp", addr)
	case transportHub:
		var serverHub, clientHub *poller.Hub
		if serverHub, err = poller.New(); err != nil {
			return nil, err
		}
		if clientHub, err = poller.New(); err != nil {
			serverHub.Close()
			return nil, err
		}
		e.hubs = []*poller.Hub{serverHub, clientHub}
		e.close = func() {
			serverHub.Close()
			clientHub.Close()
		}
		if e.lis, err = grpcopt.Listen(serverHub, "tcp", addr); err != nil {
			e.close()
			return nil, err
		}
		e.serverOpts = append(e.serverOpts, grpcopt.ServerOption(serverHub, nil))
		e.dialOpts = append(e.dialOpts, grpcopt.DialOption(clientHub))
	case transportThreads:
		var l *threads.Listener
		if l, err = threads.Listen(addr); err == nil {
			e.lis = l
		}
		e.dialOpts = append(e.dialOpts, grpc.WithContextDialer(threads.Dial))
	default:
		if n := groupSize(name); n > 1 {
			err = newGroupEndpoints(e, n)
			break
		}
		return nil, fmt.Errorf("unknown transport %q", name)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return e, nil
}
