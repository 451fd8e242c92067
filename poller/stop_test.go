//go:build linux

package poller_test

import (
	"errors"
	"net"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/poller"
)

// Tests of a hub that stops on its own: a callback ends the hub goroutine,
// or the poll set fails.

// deadHub checks everything a hub that stopped with an error matching want
// (and net.ErrClosed) and naming what must do: waiters fail, Schedule,
// AfterFunc and Register refuse work, the first Close reports the error,
// the fds are closed and Done is closed.
func deadHub(t *testing.T, h *poller.Hub, epfd, wakeFd int, waiters []<-chan error, want error, what string) {
	t.Helper()
	within(t, 5*time.Second, h.Done(), "hub stopped")
	// Before anything opens an fd that could reuse their numbers.
	for _, fd := range []int{epfd, wakeFd} {
		if fdOpen(fd) {
			t.Errorf("hub fd %d still open", fd)
		}
	}
	matches := func(err error) bool {
		return errors.Is(err, net.ErrClosed) && (want == nil || errors.Is(err, want)) &&
			err != nil && strings.Contains(err.Error(), what)
	}
	for i, w := range waiters {
		if err := within(t, 5*time.Second, w, "waiter"); !matches(err) {
			t.Errorf("waiter %d got %v, want an error matching net.ErrClosed that names %q", i, err, what)
		}
	}
	if err := h.Err(); !matches(err) {
		t.Errorf("Err() = %v", err)
	}
	if err := h.Schedule(func() { t.Error("a callback ran on a stopped hub") }); !matches(err) {
		t.Errorf("Schedule = %v", err)
	}
	h.AfterFunc(0, func() { t.Error("a timer ran on a stopped hub") })
	r, _ := pipe(t)
	if _, err := h.Register(r); !matches(err) {
		t.Errorf("Register = %v", err)
	}
	if s := h.Stats(); s.Registered != 0 {
		t.Errorf("Registered = %d", s.Registered)
	}
	if err := h.Close(); !matches(err) {
		t.Errorf("first Close = %v, want the error that stopped the hub", err)
	}
	if err := h.Close(); !errors.Is(err, net.ErrClosed) {
		t.Errorf("second Close = %v", err)
	}
}

// waitersOn registers two parked readers on h, one with a deadline an hour
// away (its timer ran on the hub goroutine, so a dead hub would never fire
// it).
func waitersOn(t *testing.T, h *poller.Hub) []<-chan error {
	t.Helper()
	_, plain := parkedReader(t, h)
	reg, timed := parkedReader(t, h)
	reg.SetDeadline(poller.Read, time.Now().Add(time.Hour))
	return []<-chan error{plain, timed}
}

// TestGoexitInACallbackStopsTheHub: t.FailNow in an AfterFunc, or any
// runtime.Goexit in a callback, ends the hub goroutine; the hub then
// behaves as a closed hub whose error says what happened.
func TestGoexitInACallbackStopsTheHub(t *testing.T) {
	for _, via := range []string{"Schedule", "AfterFunc"} {
		t.Run(via, func(t *testing.T) {
			forEachDesign(t, func(t *testing.T, h *poller.Hub) {
				epfd, wakeFd := h.FdsForTest()
				waiters := waitersOn(t, h)
				if via == "Schedule" {
					h.Schedule(runtime.Goexit)
				} else {
					h.AfterFunc(time.Millisecond, runtime.Goexit)
				}
				deadHub(t, h, epfd, wakeFd, waiters, nil, "runtime.Goexit")
			})
		})
	}
}

// TestGoexitWhileTheHubShutsDown: a callback that Close leaves to run ends
// the goroutine in the middle of shutdown; the hub still releases its fds
// and reports that it stopped.
func TestGoexitWhileTheHubShutsDown(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		epfd, wakeFd := h.FdsForTest()
		_, waiter := parkedReader(t, h)
		after := make(chan struct{})
		h.Schedule(func() {
			h.Schedule(runtime.Goexit)
			h.Schedule(func() { close(after) })
			h.Close()
		})
		within(t, 5*time.Second, h.Done(), "hub stopped")
		if err := within(t, 5*time.Second, waiter, "waiter"); !errors.Is(err, poller.ErrClosed) {
			t.Errorf("waiter got %v, want ErrClosed", err)
		}
		for _, fd := range []int{epfd, wakeFd} {
			if fdOpen(fd) {
				t.Errorf("hub fd %d still open", fd)
			}
		}
		select {
		case <-after:
			t.Error("a callback after the one that called Goexit ran")
		default:
		}
		if err := h.Close(); !errors.Is(err, net.ErrClosed) {
			t.Errorf("Close after Close = %v", err)
		}
	})
}

// TestFailingWaitClosesTheHub: a persistent epoll_wait error closes the hub
// with that error instead of spinning (block) or being ignored (park).
func TestFailingWaitClosesTheHub(t *testing.T) {
	forEachDesign(t, func(t *testing.T, h *poller.Hub) {
		epfd, wakeFd := h.FdsForTest()
		waiters := waitersOn(t, h)
		if err := h.BreakWaitForTest(); err != nil {
			t.Fatal(err)
		}
		deadHub(t, h, epfd, wakeFd, waiters, syscall.EINVAL, "epoll_wait")
	})
}

// TestDefaultHubIsReplacedOnceItStops: the default hub cannot be closed, so
// one that stopped on its own would fail every later user; Default starts a
// new one instead.
func TestDefaultHubIsReplacedOnceItStops(t *testing.T) {
	old := poller.Default()
	if err := old.Schedule(runtime.Goexit); err != nil {
		t.Fatal(err)
	}
	within(t, 5*time.Second, old.Done(), "default hub stopped")
	h := poller.Default()
	if h == old {
		t.Fatal("Default returned the stopped hub")
	}
	within(t, 5*time.Second, scheduled(t, h), "a callback on the new default hub")
	if err := h.Close(); !errors.Is(err, poller.ErrDefaultHub) {
		t.Fatalf("Close(new Default()) = %v", err)
	}
}

const panicChildEnv = "HUBIO_POLLER_PANIC_CHILD"

// TestPanicInACallbackCrashesTheProgram: the hub does not swallow a panic;
// the program dies with the panic's value and the callback's frames, as a
// panic in any goroutine would make it.
func TestPanicInACallbackCrashesTheProgram(t *testing.T) {
	if os.Getenv(panicChildEnv) == "1" {
		h, err := poller.New()
		if err != nil {
			t.Fatal(err)
		}
		h.Schedule(panickingCallback)
		time.Sleep(time.Minute) // the panic ends the process first
		t.Fatal("the panic in a callback did not crash the program")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestPanicInACallbackCrashesTheProgram$")
	cmd.Env = append(os.Environ(), panicChildEnv+"=1")
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Fatalf("child: %v, want exit status 2\n%s", err, out)
	}
	for _, want := range []string{"panic: boom in a hub callback", "poller_test.panickingCallback"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("child output lacks %q:\n%s", want, out)
		}
	}
}

func panickingCallback() { panic("boom in a hub callback") }
