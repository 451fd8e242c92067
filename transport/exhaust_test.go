//go:build linux

package transport_test

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
)

// exhaustChildEnv marks the re-executed test binary that runs out of fds.
const exhaustChildEnv = "HUBIO_EXHAUST_CHILD"

// TestAcceptAtTheFdLimitIsTemporary runs out of fds in a child process (its
// own test binary, re-executed), so that lowering RLIMIT_NOFILE cannot
// disturb other tests: Accept must fail with a Temporary() *net.OpError
// (EMFILE), and succeed again once fds are freed.
func TestAcceptAtTheFdLimitIsTemporary(t *testing.T) {
	if os.Getenv(exhaustChildEnv) == "1" {
		exhaustFDs(t)
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0],
		"-test.run=^TestAcceptAtTheFdLimitIsTemporary$", "-test.v", "-test.count=1", "-test.timeout=50s")
	cmd.Env = append(os.Environ(), exhaustChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child process: %v\n%s", err, out)
	}
	t.Logf("child process output:\n%s", out)
	for _, want := range []string{
		"accept at the fd limit: ",
		"too many open files",
		"Temporary() = true",
		"accept after freeing fds: ok",
		"--- PASS: TestAcceptAtTheFdLimitIsTemporary",
	} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q", want)
		}
	}
}

// exhaustFDs is the child's side of TestAcceptAtTheFdLimitIsTemporary.
func exhaustFDs(t *testing.T) {
	h := hubtest.NewHub(t)
	ln := listen(t, h, "tcp")
	addr := ln.Addr().String()
	var clients, servers []net.Conn
	t.Cleanup(func() {
		for _, c := range append(clients, servers...) {
			c.Close()
		}
	})

	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	open := hubtest.CountFDs(t)
	lim := orig
	lim.Cur = uint64(open + 16)
	if lim.Cur > orig.Cur {
		t.Skipf("RLIMIT_NOFILE %d is already below %d", orig.Cur, lim.Cur)
	}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
			t.Error(err)
		}
	})
	t.Logf("%d fds open; RLIMIT_NOFILE lowered from %d to %d", open, orig.Cur, lim.Cur)

	// Each round dials (a client fd) and accepts (a server fd). When the
	// dial is the one that finds no fd, give one back from the server side,
	// so that the next dial takes the last fd and leaves its conn pending
	// in the accept queue, with no fd for Accept.
	var acceptErr error
	for i := 0; acceptErr == nil; i++ {
		if i > 4*int(lim.Cur) {
			t.Fatalf("Accept never failed in %d rounds under a limit of %d fds", i, lim.Cur)
		}
		c, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			if !errors.Is(err, syscall.EMFILE) || len(servers) == 0 {
				t.Fatalf("dial %d: %v", i, err)
			}
			servers[len(servers)-1].Close()
			servers = servers[:len(servers)-1]
			continue
		}
		clients = append(clients, c)
		if err := ln.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			t.Fatal(err)
		}
		s, err := ln.Accept()
		if err != nil {
			acceptErr = err
			break
		}
		servers = append(servers, s)
	}
	oe := checkOpErr(t, acceptErr, "accept", syscall.EMFILE)
	t.Logf("accept at the fd limit: %v; Temporary() = %v", acceptErr, oe.Temporary())
	if !oe.Temporary() {
		t.Fatalf("Accept at the fd limit: Temporary() = false for %v", acceptErr)
	}
	var te interface{ Temporary() bool }
	if !errors.As(acceptErr, &te) || !te.Temporary() {
		t.Errorf("errors.As finds no Temporary() error in %v", acceptErr)
	}

	// Free fds: the conn still pending since the failed Accept is accepted.
	for range 2 {
		clients[0].Close()
		clients = clients[1:]
		if len(servers) > 0 {
			servers[0].Close()
			servers = servers[1:]
		}
	}
	if err := ln.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	s, err := ln.Accept()
	if err != nil {
		t.Fatalf("Accept after freeing fds: %v", err)
	}
	servers = append(servers, s)
	// It is the last client's conn, and it works.
	last := clients[len(clients)-1]
	if _, err := last.Write([]byte("ping")); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4)
	if err := s.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.ReadFull(s, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("accepted conn read %q, %v; want %q", buf, err, "ping")
	}
	t.Logf("accept after freeing fds: ok (%d client and %d server conns held)", len(clients), len(servers))
}
