package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/hubio/hubio/testutil"
)

func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// TestGreeterRunsOverTheHub runs the example for every address form its
// -addr flag documents, and checks that the call went through the hub and
// that a unix socket file is gone afterwards.
func TestGreeterRunsOverTheHub(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir) // for the relative unix path
	abstract := fmt.Sprintf("hubio-helloworld-%d", os.Getpid())
	for _, tc := range []struct{ addr, file string }{
		{"127.0.0.1:0", ""},
		{"unix:" + filepath.Join(dir, "abs.sock"), filepath.Join(dir, "abs.sock")},
		{"unix:rel.sock", filepath.Join(dir, "rel.sock")},
		{"unix:@" + abstract + "-a", ""},
		{"unix-abstract:" + abstract + "-b", ""},
	} {
		var out bytes.Buffer
		if err := run(&out, tc.addr, "test"); err != nil {
			t.Errorf("run(%q): %v", tc.addr, err)
			continue
		}
		if !strings.Contains(out.String(), "greeting: Hello test\n") {
			t.Errorf("run(%q) printed %q, want the greeting", tc.addr, out.String())
		}
		m := regexp.MustCompile(`hub: (\d+) sockets on the hub during the call .*, (\d+) after shutdown; (\d+) readiness events`).FindStringSubmatch(out.String())
		if m == nil || m[1] != "3" || m[2] != "0" || m[3] == "0" {
			t.Errorf("run(%q) printed %q, want 3 sockets during the call, 0 after, and some readiness events", tc.addr, out.String())
		}
		if tc.file != "" {
			if _, err := os.Stat(tc.file); !os.IsNotExist(err) {
				t.Errorf("run(%q) left %s behind (stat: %v)", tc.addr, tc.file, err)
			}
		}
	}
}
