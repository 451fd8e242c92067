// Command hubio-soak runs a hub gRPC server and many clients for a given
// time, with connection churn, random network faults injected through the
// hub (latency, bandwidth limits, stalls, resets, half-open conns), and
// server GracefulStop/restart cycles, and checks every byte: each message
// carries a sequence number and a checksum, and a lost, duplicated or
// corrupted message is a failure. Each restart brings up the next kind of
// server (grpcopt.Listen; net.Listen with grpcopt.ServerOption; a
// netutil.LimitListener with ServerOption), and each kind must have had
// its conns on the server hub. Each conn is tagged faulted when either
// side got a fault; an RPC that fails on a fault-free conn outside a
// restart window (see soak.fail) fails the run, with its status code. It
// prints what it did and exits non-zero on any failure or leak.
//
//	go run ./cmd/hubio-soak -duration 10m
package main

import (
	"flag"
	"fmt"
	"os"
	"time"
)

func main() {
	var cfg config
	flag.DurationVar(&cfg.Duration, "duration", 30*time.Second, "how long to run")
	flag.IntVar(&cfg.Clients, "clients", 8, "client goroutines, each churning its own connections")
	flag.IntVar(&cfg.RPCsPerConn, "rpcs", 20, "unary RPCs per connection before it is closed")
	flag.IntVar(&cfg.StreamMsgs, "stream", 20, "messages per bidi stream (one stream per connection)")
	flag.DurationVar(&cfg.Restart, "restart", 5*time.Second, "server GracefulStop/restart period (0: never)")
	flag.Float64Var(&cfg.FaultRate, "faults", 0.5, "probability that a new connection gets a fault")
	flag.Int64Var(&cfg.Seed, "seed", 1, "random seed")
	flag.DurationVar(&cfg.RPCTimeout, "rpc-timeout", 5*time.Second, "unary RPC deadline (streams get twice as long); a fault-free RPC that reaches it outside a restart fails the run")
	flag.BoolVar(&cfg.NoWrap, "nowrap", false, "no fault wrappers (no faults either): the hub alone")
	flag.BoolVar(&cfg.Std, "std", false, "package net instead of the hub, no faults: a baseline")
	flag.Parse()
	r, err := run(cfg, os.Stderr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "hubio-soak:", err)
		os.Exit(2)
	}
	r.print(os.Stdout)
	if problems := r.problems(); len(problems) > 0 {
		for _, p := range problems {
			fmt.Println("FAIL:", p)
		}
		os.Exit(1)
	}
	fmt.Println("PASS: nothing lost, corrupted, duplicated or leaked")
}
