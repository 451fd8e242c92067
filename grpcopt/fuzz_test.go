package grpcopt_test

import (
	"strings"
	"testing"

	"github.com/hubio/hubio/grpcopt"
)

// FuzzParseTarget checks the address forms grpc-go hands a custom dialer:
// never a panic, a unix network for every unix form, and a TCP address
// passed through untouched.
func FuzzParseTarget(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:50051", "[::1]:443", "localhost:0", "unix:///tmp/s.sock",
		"unix:rel/s.sock", "unix:@abstract", "unix-abstract:name", "\x00name", "", ":80",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, addr string) {
		network, address := grpcopt.ParseTarget(addr)
		switch {
		case strings.HasPrefix(addr, "unix"), strings.HasPrefix(addr, "\x00"):
			if strings.HasPrefix(addr, "unix:") || strings.HasPrefix(addr, "unix-abstract:") || strings.HasPrefix(addr, "\x00") {
				if network != "unix" {
					t.Fatalf("ParseTarget(%q) = %q, %q: want unix", addr, network, address)
				}
				if len(address) > len(addr)+1 {
					t.Fatalf("ParseTarget(%q): address %q longer than input", addr, address)
				}
				return
			}
		}
		if network != "tcp" || address != addr {
			t.Fatalf("ParseTarget(%q) = %q, %q: want tcp and the address unchanged", addr, network, address)
		}
	})
}
