//go:build linux

package poller_test

import (
	"bytes"
	"os"
	"runtime"
	"strconv"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
)

// Helpers shared by this package's tests.

func TestMain(m *testing.M) {
	if os.Getenv("HUBIO_POLLER_EXHAUST_CHILD") == "1" || os.Getenv(panicChildEnv) == "1" {
		// The fd-exhaustion child must reach Default with no hub yet.
		os.Exit(m.Run())
	}
	hubtest.VerifyTestMain(m)
}

var designs = []poller.WaitDesign{poller.Park, poller.Block}

// forEachDesign runs f once per hub wait design, each with its own hub.
func forEachDesign(t *testing.T, f func(t *testing.T, h *poller.Hub)) {
	for _, d := range designs {
		t.Run(d.String(), func(t *testing.T) { f(t, hubtest.NewHub(t, poller.WithWaitDesign(d))) })
	}
}

// pipe returns a non-blocking pipe, closed at cleanup unless closed before.
func pipe(t testing.TB) (r, w int) {
	t.Helper()
	var p [2]int
	if err := unix.Pipe2(p[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unix.Close(p[0]); unix.Close(p[1]) })
	return p[0], p[1]
}

// parkedReader registers the read end of a new pipe on h and starts a
// goroutine waiting for it to be readable; the channel gets what Wait
// returns (nothing is ever written to the pipe).
func parkedReader(t testing.TB, h *poller.Hub) (*poller.Registration, <-chan error) {
	t.Helper()
	r, _ := pipe(t)
	reg, err := h.Register(r)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() { got <- reg.Wait(poller.Read) }()
	return reg, got
}

// within fails the test if ch does not deliver within d.
func within[T any](t testing.TB, d time.Duration, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("%s: not within %v", what, d)
		panic("unreachable")
	}
}

// scheduled returns a channel closed once a callback scheduled on h now has run.
func scheduled(t testing.TB, h *poller.Hub) <-chan struct{} {
	t.Helper()
	ran := make(chan struct{})
	if err := h.Schedule(func() { close(ran) }); err != nil {
		t.Fatal(err)
	}
	return ran
}

// goid returns the calling goroutine's id, parsed from the first line of its
// stack trace ("goroutine 42 [running]:"), so that tests can check on
// which goroutine callbacks run; the hub itself never asks.
func goid() uint64 {
	var buf [64]byte
	b := buf[:runtime.Stack(buf[:], false)]
	b, _ = bytes.CutPrefix(b, []byte("goroutine "))
	if i := bytes.IndexByte(b, ' '); i > 0 {
		b = b[:i]
	}
	id, _ := strconv.ParseUint(string(b), 10, 64)
	return id
}

// fdOpen reports whether fd is an open file descriptor. Tests call it on
// fds just closed, before anything could reuse their numbers.
func fdOpen(fd int) bool {
	_, err := unix.FcntlInt(uintptr(fd), unix.F_GETFD, 0)
	return err != unix.EBADF
}

// callbacksDone runs a callback on h and waits until the hub has counted it,
// which it does after leaving its callbacks: the hub then runs none until
// the next Schedule or AfterFunc.
func callbacksDone(t testing.TB, h *poller.Hub) {
	t.Helper()
	before := h.Stats().Callbacks
	within(t, 5*time.Second, scheduled(t, h), "a callback")
	for deadline := time.Now().Add(5 * time.Second); h.Stats().Callbacks == before; {
		if time.Now().After(deadline) {
			t.Fatal("the callback was not counted")
		}
		runtime.Gosched()
	}
}
