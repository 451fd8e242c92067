package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/stats"

	"github.com/hubio/hubio/bench/internal/sysstat"
	"github.com/hubio/hubio/testutil"
)

// runIdle measures, per transport, what cfg.idle idle gRPC conns cost a
// server, interleaving transports across rounds, and writes a markdown
// table to stdout.
func runIdle(cfg config, stdout, stderr io.Writer) error {
	prog := newProgress(stderr, cfg.rounds*len(cfg.transports))
	per := make([][]result, len(cfg.transports))
	errs := make([]error, len(cfg.transports))
	for round := range cfg.rounds {
		for t, name := range cfg.transports {
			prog.step(fmt.Sprintf("idle %d conns: %s, round %d/%d", cfg.idle, name, round+1, cfg.rounds))
			r, err := spawn(context.Background(), "", job{Kind: kindIdle, Transport: name, Idle: cfg.idle})
			if err != nil {
				if errs[t] == nil {
					errs[t] = err
				}
				continue
			}
			per[t] = append(per[t], r)
		}
	}
	prog.done()

	fmt.Fprintf(stdout, "## hubio-bench: %d idle gRPC conns to one server\n\n", cfg.idle)
	fmt.Fprintf(stdout, "%s. Median of %d round(s), transports interleaved, each in a fresh process. "+
		"Clients are raw TCP conns (package net), held by another process, that send the HTTP/2 "+
		"preface and SETTINGS, acknowledge the server's SETTINGS and then idle: the figures are the "+
		"server process's, deltas from before the conns, each after debug.FreeOSMemory.\n\n", environment(), cfg.rounds)
	fmt.Fprintln(stdout, "| transport | conns | RSS Δ | RSS Δ/conn | goroutines Δ | threads | threads Δ |")
	fmt.Fprintln(stdout, "|---|--:|--:|--:|--:|--:|--:|")
	for t, name := range cfg.transports {
		rs := per[t]
		if len(rs) == 0 {
			fmt.Fprintf(stdout, "| %s | %d | failed: %s | | | | |\n", name, cfg.idle, cell(errs[t]))
			continue
		}
		rss := median(rs, func(r result) float64 { return float64(r.RSSDelta) })
		fmt.Fprintf(stdout, "| %s | %d | %s | %s | %.0f | %.0f | %.0f |\n", name, cfg.idle,
			fmtBytes(rss), fmtBytes(rss/float64(cfg.idle)),
			median(rs, func(r result) float64 { return float64(r.GoroutinesDelta) }),
			median(rs, func(r result) float64 { return float64(r.Threads) }),
			median(rs, func(r result) float64 { return float64(r.ThreadsDelta) }))
	}
	for t, name := range cfg.transports {
		if errs[t] != nil && len(per[t]) > 0 {
			fmt.Fprintf(stdout, "\nNote: %s: %d of %d rounds failed: %s\n", name, cfg.rounds-len(per[t]), cfg.rounds, cell(errs[t]))
		}
	}
	return nil
}

// idleDialers is how many goroutines open the idle conns.
const idleDialers = 32

// measureIdle runs one idle job: a server on j.Transport in this process,
// and j.Idle raw HTTP/2 client conns to it held by another child process
// (holdIdleClients), so that what is measured here is the server side
// alone. It reports what the conns added to RSS, goroutines and OS threads
// once the server has set up all of them.
func measureIdle(j job) (result, error) {
	if lim := sysstat.RaiseFileLimit(); lim != 0 && lim < uint64(j.Idle+fdMargin) {
		return result{}, fmt.Errorf("RLIMIT_NOFILE is %d; %d idle conns need about %d", lim, j.Idle, j.Idle+fdMargin)
	}
	if j.Transport == transportThreads {
		// One OS thread per idle server conn: let the runtime have them.
		debug.SetMaxThreads(max(10000, j.Idle+1000))
	}
	ep, err := newEndpoints(j.Transport, sideServer)
	if err != nil {
		return result{}, err
	}
	defer ep.close()
	var served connCounter
	srv := grpc.NewServer(append(ep.serverOpts, grpc.StatsHandler(&served))...)
	testutil.RegisterEchoServer(srv, nil)
	go srv.Serve(ep.lis)
	defer srv.Stop()

	// The client process, and the goroutines that watch it, start before
	// the first snapshot so that it counts them too.
	clients, err := startIdleClients(ep.lis.Addr().String(), j.Idle)
	if err != nil {
		return result{}, err
	}
	defer clients.stop()
	before, err := idleSnapshot()
	if err != nil {
		return result{}, err
	}
	if err := clients.dial(); err != nil {
		return result{}, err
	}
	deadline := time.Now().Add(time.Minute)
	for served.n.Load() < int64(j.Idle) {
		if err := clients.failed(); err != nil {
			return result{}, err
		}
		if time.Now().After(deadline) {
			return result{}, fmt.Errorf("server set up %d of %d conns in a minute", served.n.Load(), j.Idle)
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond) // let the server's per-conn goroutines park
	after, err := idleSnapshot()
	if err != nil {
		return result{}, err
	}
	return result{
		RSSDelta:        after.rss - before.rss,
		GoroutinesDelta: after.goroutines - before.goroutines,
		Threads:         after.threads,
		ThreadsDelta:    after.threads - before.threads,
	}, nil
}

// fdMargin is how many fds a process needs besides one per idle conn.
const fdMargin = 64

// idleClients is the child process that holds the idle client conns.
type idleClients struct {
	cmd *exec.Cmd
	// stdin is the child's: a line on it tells the child to dial, and
	// closing it tells the child to close its conns and exit.
	stdin  io.WriteCloser
	stderr *bytes.Buffer // what the child says when it fails
	exited chan struct{} // closed when the child has exited
	err    error         // why it exited; read after exited is closed
}

// startIdleClients starts a child that will open n idle conns to addr
// when dial is called.
func startIdleClients(addr string, n int) (*idleClients, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	spec, err := json.Marshal(job{Kind: kindIdleClients, Addr: addr, Idle: n})
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), childEnv+"="+string(spec))
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	c := &idleClients{cmd: cmd, stdin: stdin, stderr: new(bytes.Buffer), exited: make(chan struct{})}
	cmd.Stderr = c.stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		err := cmd.Wait()
		if err == nil {
			err = errors.New("exited early")
		}
		c.err = fmt.Errorf("idle clients: %w: %s", err, lastLines(c.stderr.String(), 3))
		close(c.exited)
	}()
	return c, nil
}

// dial tells the child to open its conns.
func (c *idleClients) dial() error {
	_, err := io.WriteString(c.stdin, "dial\n")
	return err
}

// failed returns why the child exited, or nil while it runs.
func (c *idleClients) failed() error {
	select {
	case <-c.exited:
		return c.err
	default:
		return nil
	}
}

// stop tells the child to close its conns and waits for it (killing it
// after a while).
func (c *idleClients) stop() {
	c.stdin.Close()
	select {
	case <-c.exited:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-c.exited
	}
}

// holdIdleClients is the idle clients' child: once a line arrives on
// stdin, it opens j.Idle idle conns to j.Addr and holds them until stdin
// reaches EOF.
func holdIdleClients(j job, stdin io.Reader) error {
	if lim := sysstat.RaiseFileLimit(); lim != 0 && lim < uint64(j.Idle+fdMargin) {
		return fmt.Errorf("RLIMIT_NOFILE is %d; %d idle conns need about %d", lim, j.Idle, j.Idle+fdMargin)
	}
	in := bufio.NewReader(stdin)
	if _, err := in.ReadString('\n'); err != nil {
		return nil // told to stop before dialing
	}
	conns, err := dialIdle(j.Addr, j.Idle)
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, in)
	return err
}

// idleState is the process's footprint at one moment.
type idleState struct {
	rss        int64
	goroutines int
	threads    int
}

// idleSnapshot returns the footprint after returning freed memory to the
// OS, so that RSS reflects what is live.
func idleSnapshot() (idleState, error) {
	debug.FreeOSMemory()
	var buf statusBuf
	st, err := readProcStatus(&buf)
	if err != nil {
		return idleState{}, fmt.Errorf("reading /proc/self/status: %w", err)
	}
	return idleState{rss: st.rss, goroutines: runtime.NumGoroutine(), threads: st.threads}, nil
}

// dialIdle opens n idle HTTP/2 client conns to addr. It returns the conns
// it opened, also on error.
func dialIdle(addr string, n int) ([]net.Conn, error) {
	conns := make([]net.Conn, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	for range min(idleDialers, n) {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= n {
					return
				}
				c, err := dialOneIdle(addr)
				if err != nil {
					mu.Lock()
					if first == nil {
						first = fmt.Errorf("idle conn %d: %w", i, err)
					}
					mu.Unlock()
					return
				}
				conns[i] = c
			}
		})
	}
	wg.Wait()
	opened := conns[:0]
	for _, c := range conns {
		if c != nil {
			opened = append(opened, c)
		}
	}
	return opened, first
}

// dialOneIdle connects to addr, sends the HTTP/2 client preface and an
// empty SETTINGS frame, and acknowledges the server's SETTINGS: what a
// gRPC client does before its first call.
func dialOneIdle(addr string) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", addr, 10*time.Second)
	if err != nil {
		return nil, err
	}
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		c.Close()
		return nil, err
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		c.Close()
		return nil, err
	}
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			c.Close()
			return nil, err
		}
		if s, ok := f.(*http2.SettingsFrame); ok && !s.IsAck() {
			break
		}
	}
	if err := fr.WriteSettingsAck(); err != nil {
		c.Close()
		return nil, err
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

// connCounter is a grpc stats.Handler that counts server transports set
// up (ConnBegin: the client's preface and SETTINGS have been read).
type connCounter struct{ n atomic.Int64 }

func (c *connCounter) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context { return ctx }
func (c *connCounter) HandleRPC(context.Context, stats.RPCStats)                       {}
func (c *connCounter) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context {
	return ctx
}

func (c *connCounter) HandleConn(_ context.Context, s stats.ConnStats) {
	if _, ok := s.(*stats.ConnBegin); ok {
		c.n.Add(1)
	}
}

var _ stats.Handler = (*connCounter)(nil)
