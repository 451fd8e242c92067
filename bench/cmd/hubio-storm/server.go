package main

import (
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"

	"golang.org/x/net/netutil"
	"google.golang.org/grpc"

	"github.com/hubio/hubio/bench/internal/sysstat"
	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/testutil"
	"github.com/hubio/hubio/transport"
)

// serverCase is one way of serving the echo service during a storm.
type serverCase struct {
	name string
	desc string
	// listen returns the listener the case serves on.
	listen func(o options) (net.Listener, error)
}

// cases are the servers compared, in the order they run in each round.
var cases = []serverCase{
	{"net", "package net, no limit", func(options) (net.Listener, error) {
		return net.Listen("tcp", "127.0.0.1:0")
	}},
	{"limit", "netutil.LimitListener", func(o options) (net.Listener, error) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return netutil.LimitListener(l, o.limit), nil
	}},
	{"hub", "hub, no admission", func(options) (net.Listener, error) {
		return grpcopt.Listen(nil, "tcp", "127.0.0.1:0")
	}},
	{"peer", "hub, per-peer limit", func(o options) (net.Listener, error) {
		return hubListen(transport.AdmissionPolicy{MaxConnsPerPeer: o.perPeer})
	}},
	{"rate", "hub, pacing (refuse)", func(o options) (net.Listener, error) {
		return hubListen(transport.AdmissionPolicy{Rate: o.rate, Burst: o.burst, RefuseOverRate: true})
	}},
	{"pause", "hub, pacing (pause)", func(o options) (net.Listener, error) {
		return hubListen(transport.AdmissionPolicy{Rate: o.rate, Burst: o.burst})
	}},
}

// hubListen is grpcopt.Listen on the default hub with an Admission for p.
func hubListen(p transport.AdmissionPolicy) (net.Listener, error) {
	a, err := transport.NewAdmission(p)
	if err != nil {
		return nil, err
	}
	return grpcopt.Config{Admission: a, NoTelemetry: true}.Listen("tcp", "127.0.0.1:0")
}

// caseNamed returns the case called name.
func caseNamed(name string) (serverCase, bool) {
	for _, c := range cases {
		if c.name == name {
			return c, true
		}
	}
	return serverCase{}, false
}

// serve is the child process: it serves the echo service on the case's
// listener, prints the address on stdout, and runs until stdin closes or a
// signal arrives.
func serve(name string, o options) error {
	sysstat.RaiseFileLimit()
	c, ok := caseNamed(name)
	if !ok {
		return fmt.Errorf("no case %q", name)
	}
	lis, err := c.listen(o)
	if err != nil {
		return err
	}
	srv := grpc.NewServer()
	testutil.RegisterEchoServer(srv, nil)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(lis) }()
	fmt.Println(lis.Addr().String())
	stop := make(chan struct{})
	go func() {
		os.Stdin.Read(make([]byte, 1)) // the parent closes stdin to stop us
		close(stop)
	}()
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, os.Interrupt)
	select {
	case <-stop:
	case <-sig:
	case err := <-done:
		return err
	}
	srv.Stop()
	return nil
}
