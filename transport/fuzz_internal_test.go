package transport

import (
	"context"
	"errors"
	"net"
	"testing"
	"time"
)

// noNetwork is a resolver that answers from /etc/hosts only: fuzzed host
// names must never reach a DNS server.
var noNetwork = &net.Resolver{
	PreferGo: true,
	Dial: func(context.Context, string, string) (net.Conn, error) {
		return nil, errors.New("fuzz: no network")
	},
}

// FuzzResolve feeds arbitrary addresses to the Dialer's address parsing:
// it must never panic, and every address it returns must suit the network.
func FuzzResolve(f *testing.F) {
	for _, s := range []string{
		"127.0.0.1:80", "[::1]:443", "[fe80::1%lo]:80", "localhost:http", ":0",
		"host:-1", "[::1", "1.2.3.4", "/tmp/s.sock", "@abstract", "",
	} {
		f.Add("tcp", s)
		f.Add("unix", s)
	}
	f.Add("tcp4", "[::1]:1")
	f.Add("tcp6", "127.0.0.1:1")
	f.Add("udp", "127.0.0.1:1")
	f.Fuzz(func(t *testing.T, network, address string) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		d := &Dialer{Resolver: noNetwork}
		addrs, err := d.resolve(ctx, network, address)
		if err != nil {
			if len(addrs) != 0 {
				t.Fatalf("resolve(%q, %q) returned addresses with error %v", network, address, err)
			}
			return
		}
		if len(addrs) == 0 {
			t.Fatalf("resolve(%q, %q) returned nothing and no error", network, address)
		}
		for _, a := range addrs {
			switch a := a.(type) {
			case *net.TCPAddr:
				if network == "unix" {
					t.Fatalf("resolve(%q, %q) gave TCP address %v", network, address, a)
				}
				if network == "tcp4" && a.IP != nil && a.IP.To4() == nil {
					t.Fatalf("tcp4 gave %v", a)
				}
				if network == "tcp6" && a.IP != nil && a.IP.To4() != nil {
					t.Fatalf("tcp6 gave %v", a)
				}
				if a.Port < 0 || a.Port > 65535 {
					t.Fatalf("port out of range: %v", a)
				}
			case *net.UnixAddr:
				if network != "unix" {
					t.Fatalf("resolve(%q, %q) gave unix address %v", network, address, a)
				}
			default:
				t.Fatalf("unexpected address type %T", a)
			}
		}
	})
}
