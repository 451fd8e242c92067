package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

func TestGroupSizeNamesHubTransports(t *testing.T) {
	for name, want := range map[string]int{
		"hub": 1, "hub2": 2, "hub16": 16,
		"hub1": 0, "hub0": 0, "hub02": 0, "hub-2": 0, "hubx": 0, "std": 0, "threads": 0,
	} {
		if got := groupSize(name); got != want {
			t.Errorf("groupSize(%q) = %d, want %d", name, got, want)
		}
	}
}

func TestHubsFlagExpandsTheHubTransport(t *testing.T) {
	var stderr bytes.Buffer
	cfg, err := parseFlags([]string{"-transports=std,hub,threads", "-hubs=1,2,4"}, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"std", "hub", "hub2", "hub4", "threads"}; !slices.Equal(cfg.transports, want) {
		t.Fatalf("transports %v, want %v", cfg.transports, want)
	}
	for _, args := range [][]string{{"-hubs=0"}, {"-transports=std,hub1"}} {
		if _, err := parseFlags(args, &stderr); err == nil {
			t.Errorf("parseFlags(%q) accepted", args)
		}
	}
}

func TestHubsRunReportsAGroupRowAndEachHubsLoad(t *testing.T) {
	var stdout, stderr bytes.Buffer
	args := []string{"-quick", "-rounds=1", "-modes=unary", "-payloads=64", "-conc=4", "-conns=4", "-transports=std,hub", "-hubs=1,2", "-svg="}
	if code := run(args, &stdout, &stderr); code != 0 {
		t.Fatalf("run(%q) = %d; stderr:\n%s", args, code, stderr.String())
	}
	out := stdout.String()
	t.Logf("stdout:\n%s", out)
	if strings.Contains(out, "failed") {
		t.Errorf("a run failed")
	}
	for _, row := range []string{"|  | hub |", "|  | hub2 |", "| unary 64B c4 | hub2 | ", "| unary 64B c4 | hub2 | server | ", "| unary 64B c4 | hub2 | client | "} {
		if !strings.Contains(out, row) {
			t.Errorf("no row containing %q", row)
		}
	}
	// Each side of hub2 lists two hubs.
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "| hub2 | server |") || strings.Contains(line, "| hub2 | client |") {
			if n := strings.Count(line, " · ") + 1; n != 2 {
				t.Errorf("%d hubs in %q, want 2", n, line)
			}
		}
	}
	if !strings.Contains(out, fmt.Sprintf("| %s | %s | %s |", "unary 64B c4", "hub", "server")) {
		t.Errorf("no load row for the single hub")
	}
}

// hub-shared puts one process's server and client on one hub, as grpcopt's
// defaults (poller.Default()) do; hub gives each side its own.
func TestHubSharedPutsBothSidesOnOneHub(t *testing.T) {
	for name, want := range map[string]int{transportHub: 2, transportHubShared: 1} {
		e, err := newEndpoints(name, sideBoth)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if got := len(e.hubs); got != want {
			t.Errorf("%s: %d hubs for both sides, want %d", name, got, want)
		}
		e.lis.Close()
		e.close()
		for _, h := range e.hubs {
			select {
			case <-h.Done():
			default:
				t.Errorf("%s: a hub still open after close", name)
			}
		}
	}
	e, err := newEndpoints(transportHubShared, sideServer)
	if err != nil {
		t.Fatal(err)
	}
	defer e.close()
	defer e.lis.Close()
	if len(e.hubs) != 1 {
		t.Errorf("hub-shared, server alone: %d hubs, want 1", len(e.hubs))
	}
}

// hub-paired puts both ends of each conn on one hub of one group.
func TestHubPairedPutsBothEndsOfAConnOnOneHub(t *testing.T) {
	g, err := poller.NewGroup(2, poller.WithBalance(poller.RoundRobin))
	if err != nil {
		t.Fatal(err)
	}
	defer g.Close()
	p := newPairing()
	dial := pairedDial(g, p)
	creds := pairedCreds{p: p, TransportCredentials: insecure.NewCredentials()}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	for i := range 4 {
		accepted := make(chan net.Conn, 1)
		go func() {
			raw, _ := ln.Accept()
			accepted <- raw
		}()
		c, err := dial(context.Background(), ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		raw := <-accepted
		if raw == nil {
			t.Fatal("accept failed")
		}
		s, _, err := creds.ServerHandshake(raw)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		ch, ok1 := transport.Beneath[*transport.Conn](c)
		sh, ok2 := transport.Beneath[*transport.Conn](s)
		if !ok1 || !ok2 {
			t.Fatalf("conn %d: not hub conns: %T, %T", i, c, s)
		}
		if ch.Hub() != sh.Hub() {
			t.Errorf("conn %d: client end on one hub, server end on another", i)
		}
		if want := g.Hubs()[i%2]; ch.Hub() != want {
			t.Errorf("conn %d: not on the group's next hub", i)
		}
	}
	if _, err := newEndpoints(transportHubPaired, sideServer); err == nil {
		t.Error("hub-paired with the server alone: no error")
	}
}
