//go:build linux

package poller_test

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"

	"github.com/hubio/hubio/poller"
)

// TestNewFailsClearlyWithoutFds runs a child process whose fd limit leaves
// no room for a hub's eventfd and epoll fd: New must return an error that
// names the syscall and matches EMFILE; Default must hand out a hub whose
// calls fail with that error; once fds are available again, both work.
func TestNewFailsClearlyWithoutFds(t *testing.T) {
	if os.Getenv("HUBIO_POLLER_EXHAUST_CHILD") == "1" {
		exhaustChild()
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNewFailsClearlyWithoutFds$", "-test.v")
	cmd.Env = append(os.Environ(), "HUBIO_POLLER_EXHAUST_CHILD=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "child: ok") {
		t.Fatalf("child did not report success:\n%s", out)
	}
}

// exhaustChild runs in the child process; it prints "child: ok" or exits 1.
func exhaustChild() {
	fail := func(format string, args ...any) {
		os.Stderr.WriteString("child: " + strings.TrimSpace(sprintf(format, args...)) + "\n")
		os.Exit(1)
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		fail("getrlimit: %v", err)
	}
	// Fill every fd below a low limit, then lower the limit to it.
	var held []int
	for {
		fd, err := syscall.Dup(0)
		if err != nil {
			fail("dup: %v", err)
		}
		held = append(held, fd)
		if fd >= 64 {
			break
		}
	}
	low := syscall.Rlimit{Cur: uint64(held[len(held)-1] + 1), Max: lim.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		fail("setrlimit: %v", err)
	}
	h, err := poller.New()
	if err == nil {
		h.Close()
		fail("New succeeded with no fds left")
	}
	if !errors.Is(err, syscall.EMFILE) || !(strings.Contains(err.Error(), "eventfd") || strings.Contains(err.Error(), "epoll")) {
		fail("New error %q: want EMFILE naming eventfd or epoll", err)
	}
	d := poller.Default()
	if derr := d.Err(); !errors.Is(derr, syscall.EMFILE) {
		fail("Default().Err() = %v, want EMFILE", derr)
	}
	if serr := d.Schedule(func() {}); !errors.Is(serr, syscall.EMFILE) {
		fail("Schedule on the failed default hub = %v", serr)
	}
	// Free fds: New and Default work again.
	for _, fd := range held[len(held)-4:] {
		syscall.Close(fd)
	}
	h, err = poller.New()
	if err != nil {
		fail("New after fds freed: %v", err)
	}
	h.Close()
	if err := poller.Default().Err(); err != nil {
		fail("Default after fds freed: %v", err)
	}
	for _, fd := range held[:len(held)-4] {
		syscall.Close(fd)
	}
	os.Stdout.WriteString("child: ok\n")
}

var sprintf = fmt.Sprintf
