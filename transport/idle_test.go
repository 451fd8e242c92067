//go:build linux

package transport_test

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/transport"
)

// TestTenThousandIdleConnsReturnEverything holds 10,000 idle hub conns
// (accepted from package net clients in a child process, so that the fd
// limit covers one end only), then closes them all: the fds and goroutines
// of this process return to where they started.
func TestTenThousandIdleConnsReturnEverything(t *testing.T) {
	if os.Getenv("HUBIO_IDLE_CHILD") != "" {
		idleChild()
		return
	}
	n := 10000
	if testing.Short() {
		n = 1000
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if lim.Cur < lim.Max {
		raised := syscall.Rlimit{Cur: lim.Max, Max: lim.Max}
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &raised); err == nil {
			t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim) })
			lim = raised
		}
	}
	if limit := int(lim.Cur) - 256; n > limit {
		t.Logf("fd limit %d: holding %d conns instead of %d", lim.Cur, limit, n)
		n = limit
	}

	h := hubtest.NewHub(t)
	fdsBefore, gBefore := hubtest.CountFDs(t), runtime.NumGoroutine()
	ln, err := transport.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestTenThousandIdleConnsReturnEverything$")
	cmd.Env = append(os.Environ(), "HUBIO_IDLE_CHILD="+ln.Addr().String()+","+strconv.Itoa(n))
	stdin, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { stdin.Close(); cmd.Wait() })

	conns := make([]net.Conn, 0, n)
	for len(conns) < n {
		c, err := ln.Accept()
		if err != nil {
			t.Fatalf("accept %d: %v", len(conns), err)
		}
		conns = append(conns, c)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || line != "dialed\n" {
		t.Fatalf("child: %q, %v", line, err)
	}
	held := hubtest.CountFDs(t)
	if s := h.Stats(); s.Registered < int64(n) {
		t.Fatalf("hub has %d fds registered, want %d", s.Registered, n)
	}
	t.Logf("%d idle conns: %d fds open, %d goroutines (before: %d fds, %d goroutines)",
		n, held, runtime.NumGoroutine(), fdsBefore, gBefore)
	if g := runtime.NumGoroutine(); g > gBefore+10 {
		t.Fatalf("%d goroutines for %d idle conns: idle conns must not hold goroutines", g, n)
	}
	for _, c := range conns {
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
	ln.Close()
	stdin.Close()
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	hubtest.Eventually(t, 10*time.Second, fmt.Sprintf("fds back to %d", fdsBefore), func() bool { return hubtest.CountFDs(t) <= fdsBefore })
	hubtest.Eventually(t, 10*time.Second, fmt.Sprintf("goroutines back to %d", gBefore), func() bool { return runtime.NumGoroutine() <= gBefore })
	if s := h.Stats(); s.Registered != 0 {
		t.Fatalf("hub still has %d fds registered", s.Registered)
	}
}

// idleChild dials the conns for the parent, says so, and holds them until
// its stdin closes.
func idleChild() {
	var addr string
	var n int
	spec := os.Getenv("HUBIO_IDLE_CHILD")
	for i := len(spec) - 1; i >= 0; i-- {
		if spec[i] == ',' {
			addr = spec[:i]
			n, _ = strconv.Atoi(spec[i+1:])
			break
		}
	}
	var lim syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	lim.Cur = lim.Max
	syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	conns := make([]net.Conn, 0, n)
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			fmt.Fprintln(os.Stderr, "child dial:", err)
			os.Exit(1)
		}
		conns = append(conns, c)
	}
	fmt.Println("dialed")
	io.Copy(io.Discard, os.Stdin)
	for _, c := range conns {
		c.Close()
	}
	os.Exit(0)
}
