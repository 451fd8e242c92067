package sysstat

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

func TestProcCPUGrowsWithWork(t *testing.T) {
	before := ProcCPU(os.Getpid())
	deadline := time.Now().Add(10 * time.Second)
	x := 0
	for ProcCPU(os.Getpid()) <= before && time.Now().Before(deadline) {
		for i := range 1_000_000 {
			x += i
		}
	}
	if after := ProcCPU(os.Getpid()); after <= before {
		t.Fatalf("ProcCPU stayed at %v after 10 s of work (x=%d)", after, x)
	}
	if got := ProcCPU(-1); got != 0 {
		t.Errorf("ProcCPU of no process = %v, want 0", got)
	}
}

func TestRaiseFileLimitReachesTheHardLimit(t *testing.T) {
	got := RaiseFileLimit()
	if got == 0 {
		t.Fatal("RaiseFileLimit returned 0")
	}
	if again := RaiseFileLimit(); again != got {
		t.Errorf("a second RaiseFileLimit returned %d, the first %d", again, got)
	}
}

func TestLoadAvgHasThreeFields(t *testing.T) {
	if f := strings.Fields(LoadAvg()); len(f) != 3 {
		t.Errorf("LoadAvg() = %q, want three fields", LoadAvg())
	}
}
