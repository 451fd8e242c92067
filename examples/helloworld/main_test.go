package main

import (
	"path/filepath"
	"testing"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

func TestGreeterRunsOverTheHub(t *testing.T) {
	for _, addr := range []string{"127.0.0.1:0", "unix:" + filepath.Join(t.TempDir(), "greeter.sock")} {
		if err := run(addr, "test"); err != nil {
			t.Fatalf("run(%q): %v", addr, err)
		}
	}
}
