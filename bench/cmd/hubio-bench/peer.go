package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime/pprof"
	"strings"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"

	"github.com/hubio/hubio/testutil"
)

// This file is the measured-as-deployed set-ups (-setup server, -setup
// client): the process measured holds one side of the gRPC conns on the
// transport under test, and a peer process, started by it, holds the other
// side on package net. Each process reports its own CPU time.
//
// The peer speaks a line protocol with the process that started it:
//
//	peer → stdout: "addr HOST:PORT" (server role) or "ready" (client role,
//	               once its conns are up and its callers run)
//	stdin → peer:  "measure" (start the window), "stop" (end it)
//	peer → stdout: its result, one JSON line, after "stop"
//	stdin EOF:     the peer closes everything and exits
//
// The peer's server stays up until stdin ends, so the measured process's
// callers never see it go away while they run.

// Set-ups, as given to -setup.
const (
	setupBoth   = "both"   // server and clients in one process, each on the transport (today's)
	setupServer = "server" // the server alone on the transport; clients on package net in another process
	setupClient = "client" // the clients alone on the transport; a package-net server in another process
)

// setupSides returns the sides a measured process holds on its transport
// in setup s ("" is setupBoth).
func setupSides(s string) (sides, error) {
	switch s {
	case setupBoth, "":
		return sideBoth, nil
	case setupServer:
		return sideServer, nil
	case setupClient:
		return sideClient, nil
	}
	return 0, fmt.Errorf("unknown set-up %q (want both, server or client)", s)
}

// Peer roles and commands.
const (
	roleServer = "server"
	roleClient = "client"

	peerMeasure = "measure"
	peerStop    = "stop"
)

// peerJob is the job of j's peer in role: package net, the same RPCs, the
// server at addr (client role). Its CPU profile, if j has one, is j's with
// "-peer" before the extension.
func peerJob(j job, role, addr string) job {
	p := job{
		Kind: kindPeer, Role: role, Transport: transportStd, Mode: j.Mode, Payload: j.Payload,
		Conc: j.Conc, Conns: j.Conns, GOMAXPROCS: j.GOMAXPROCS, Addr: addr,
	}
	if j.CPUProfile != "" {
		p.CPUProfile = strings.TrimSuffix(j.CPUProfile, ".pprof") + "-peer.pprof"
	}
	return p
}

// peerTimeout bounds each wait for a line from the peer.
const peerTimeout = time.Minute

// peer is a running peer process, seen from the process that started it.
type peer struct {
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	lines  chan string   // the peer's stdout, line by line; closed at EOF
	stderr *bytes.Buffer // what it says when it fails; read after exited
	exited chan struct{} // closed when cmd.Wait has returned
	addr   string        // the server role's address
}

// startPeer starts a peer for j and waits for its first line: its address
// (server role) or that it is ready (client role).
func startPeer(j job) (*peer, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, err := json.Marshal(j)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	p := &peer{cmd: cmd, lines: make(chan string, 4), stderr: new(bytes.Buffer), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	if p.stdin, err = cmd.StdinPipe(); err != nil {
		return nil, err
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			p.lines <- sc.Text()
		}
		close(p.lines)
		cmd.Wait()
		close(p.exited)
	}()
	line, err := p.line()
	if err != nil {
		p.stop()
		return nil, err
	}
	switch {
	case j.Role == roleServer && strings.HasPrefix(line, "addr "):
		p.addr = strings.TrimPrefix(line, "addr ")
	case j.Role == roleClient && line == "ready":
	default:
		p.stop()
		return nil, fmt.Errorf("peer %s: unexpected first line %q", j.Role, line)
	}
	return p, nil
}

// line returns the peer's next line.
func (p *peer) line() (string, error) {
	select {
	case l, ok := <-p.lines:
		if ok {
			return l, nil
		}
		<-p.exited
		return "", fmt.Errorf("peer exited: %s", lastLines(p.stderr.String(), 3))
	case <-time.After(peerTimeout):
		return "", errors.New("peer: no answer in a minute")
	}
}

// send gives the peer a command.
func (p *peer) send(cmd string) error {
	if _, err := io.WriteString(p.stdin, cmd+"\n"); err != nil {
		return fmt.Errorf("peer: %w", err)
	}
	return nil
}

// result reads the peer's result, which it writes after "stop".
func (p *peer) result() (result, error) {
	line, err := p.line()
	if err != nil {
		return result{}, err
	}
	var r result
	if err := json.Unmarshal([]byte(line), &r); err != nil {
		return result{}, fmt.Errorf("peer result: %w", err)
	}
	return r, nil
}

// stop ends the peer's input, so that it closes up and exits, and waits for
// it (killing it after a while).
func (p *peer) stop() {
	p.stdin.Close()
	select {
	case <-p.exited:
	case <-time.After(30 * time.Second):
		p.cmd.Process.Kill()
		<-p.exited
	}
}

// peerMain is the peer's side of the protocol above: j.Role on package net.
func peerMain(j job, stdin io.Reader, stdout io.Writer) error {
	ep, err := newEndpoints(transportStd, sideBoth)
	if err != nil {
		return err
	}
	defer ep.close()
	in := bufio.NewReader(stdin)
	expect := func(cmd string) error {
		l, err := in.ReadString('\n')
		if err != nil {
			return fmt.Errorf("waiting for %q: %w", cmd, err)
		}
		if l = strings.TrimSpace(l); l != cmd {
			return fmt.Errorf("got %q, want %q", l, cmd)
		}
		return nil
	}
	var callers []*caller
	var phase atomic.Int32
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	switch j.Role {
	case roleServer:
		srv := grpc.NewServer(ep.serverOpts...)
		testutil.RegisterEchoServer(srv, nil)
		go srv.Serve(ep.lis)
		defer srv.Stop()
		fmt.Fprintf(stdout, "addr %s\n", ep.addr)
	case roleClient:
		ep.addr = j.Addr
		clients, err := dialClients(ep, j.Conns)
		if err != nil {
			return err
		}
		callers = startCallers(ctx, j, clients, &phase)
		fmt.Fprintln(stdout, "ready")
	default:
		return fmt.Errorf("unknown peer role %q", j.Role)
	}
	var prof *os.File
	if j.CPUProfile != "" {
		if prof, err = os.Create(j.CPUProfile); err != nil {
			return err
		}
		defer prof.Close()
	}
	if err := expect(peerMeasure); err != nil {
		return err
	}
	if prof != nil {
		if err := pprof.StartCPUProfile(prof); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	cpu0 := cpuTime()
	phase.Store(phaseMeasure)
	if err := expect(peerStop); err != nil {
		return err
	}
	phase.Store(phaseStop)
	r := result{CPU: cpuTime() - cpu0}
	if prof != nil {
		pprof.StopCPUProfile()
		if err := prof.Close(); err != nil {
			return fmt.Errorf("cpu profile: %w", err)
		}
	}
	if len(callers) > 0 {
		cancel()
		for _, c := range callers {
			<-c.done
		}
		if r.RPCs, r.P50, r.P99, r.P999, err = tally(callers); err != nil {
			return err
		}
	}
	if err := json.NewEncoder(stdout).Encode(r); err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, in) // until the measured process is done
	return err
}
