package testutil_test

import (
	"testing"

	"go.uber.org/goleak"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

func TestIgnoreDefaultHubIgnoresOnlyTheDefaultHub(t *testing.T) {
	if err := poller.Default().Schedule(func() {}); err != nil {
		t.Fatal(err)
	}
	if err := goleak.Find(testutil.IgnoreDefaultHub()); err != nil {
		t.Fatalf("with the default hub running: %v", err)
	}
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	if err := goleak.Find(testutil.IgnoreDefaultHub()); err == nil {
		t.Fatal("a hub from poller.New, still open, was not reported")
	}
}
