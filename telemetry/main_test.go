package telemetry_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/hubio/hubio/poller"
)

func TestMain(m *testing.M) {
	// The default hub lives as long as the process: start it before goleak
	// takes its snapshot so that only its goroutine is ignored.
	poller.Default()
	goleak.VerifyTestMain(m, goleak.IgnoreCurrent())
}
