package testutil_test

import (
	"fmt"
	"strings"
	"testing"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

func TestVerifyNoLeaksFirstThenStartEcho(t *testing.T) {
	testutil.VerifyNoLeaks(t) // its check runs after StartEcho's cleanup
	e := testutil.StartEcho(t)
	checkEcho(t, e)
}

func TestVerifyNoLeaksDeferredThenStartEcho(t *testing.T) {
	defer testutil.VerifyNoLeaks(t)
	e := testutil.StartEcho(t, testutil.WithServerFaults(testutil.Faults{}), testutil.WithClientFaults(testutil.Faults{}))
	checkEcho(t, e)
}

// recordingTB runs cleanups when told and records errors.
type recordingTB struct {
	testing.TB
	cleanups []func()
	errs     []string
}

func (r *recordingTB) Helper()                   {}
func (r *recordingTB) Cleanup(f func())          { r.cleanups = append(r.cleanups, f) }
func (r *recordingTB) Error(args ...any)         { r.errs = append(r.errs, fmt.Sprint(args...)) }
func (r *recordingTB) Errorf(f string, a ...any) { r.errs = append(r.errs, fmt.Sprintf(f, a...)) }

// runCleanups runs the cleanups last-in first-out, as testing does.
func (r *recordingTB) runCleanups() {
	for len(r.cleanups) > 0 {
		f := r.cleanups[len(r.cleanups)-1]
		r.cleanups = r.cleanups[:len(r.cleanups)-1]
		f()
	}
}

// TestVerifyNoLeaksSaysWhatToDo: deferred after a resource that a cleanup
// closes, the check runs first and fails, and its message says to call
// VerifyNoLeaks first, without defer.
func TestVerifyNoLeaksSaysWhatToDo(t *testing.T) {
	r := &recordingTB{TB: t}
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	r.Cleanup(func() { h.Close() })
	testutil.VerifyNoLeaks(r) // as `defer` would: after the hub's cleanup
	r.runCleanups()
	if len(r.errs) != 1 {
		t.Fatalf("VerifyNoLeaks reported %d errors, want 1: %q", len(r.errs), r.errs)
	}
	for _, want := range []string{"poller.(*Hub)", "call testutil.VerifyNoLeaks(t) first in the test, without defer"} {
		if !strings.Contains(r.errs[0], want) {
			t.Errorf("VerifyNoLeaks's message lacks %q:\n%s", want, r.errs[0])
		}
	}
}
