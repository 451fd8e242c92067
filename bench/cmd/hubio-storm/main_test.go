package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

func TestQuantile(t *testing.T) {
	var d []time.Duration
	for i := 1; i <= 100; i++ {
		d = append(d, time.Duration(i)*time.Millisecond)
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 51 * time.Millisecond}, {0.99, 99 * time.Millisecond}, {1, 100 * time.Millisecond}, {0, time.Millisecond}} {
		if got := quantile(d, tc.q); got != tc.want {
			t.Errorf("quantile(1..100ms, %v) = %v, want %v", tc.q, got, tc.want)
		}
	}
	if got := quantile(nil, 0.99); got != 0 {
		t.Errorf("quantile of nothing = %v, want 0", got)
	}
}

func TestStormKind(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{&net.OpError{Op: "read", Err: os.NewSyscallError("read", syscall.ECONNRESET)}, "reset"},
		{fmt.Errorf("x: %w", io.EOF), "reset"},
		{&net.OpError{Op: "read", Err: os.ErrDeadlineExceeded}, "deadline"},
		{errors.New("something else"), "other"},
	} {
		if got := stormKind(tc.err); got != tc.want {
			t.Errorf("stormKind(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

func TestReportTakesTheMedianRound(t *testing.T) {
	c := cases[0]
	mk := func(base, during time.Duration) result {
		return result{c: c, base: []time.Duration{base}, during: []time.Duration{during}, failKinds: map[string]int{}}
	}
	var b strings.Builder
	report(&b, []serverCase{c}, []result{mk(10, 30), mk(10, 10), mk(10, 20)})
	if !strings.Contains(b.String(), "| 2.00 (1.00–3.00) |") {
		t.Errorf("report does not give the median ratio with its range:\n%s", b.String())
	}
}
