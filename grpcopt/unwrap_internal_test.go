package grpcopt

import (
	"crypto/tls"
	"net"
	"sync"
	"testing"
	"time"
)

// limitConn is shaped as etcd's limitListenerConn (client/pkg/transport,
// v3.7.3): an embedded net.Conn, Close releasing a slot, keepalive setters.
type limitConn struct {
	net.Conn
	releaseOnce sync.Once
	release     func()
}

func (l *limitConn) Close() error {
	err := l.Conn.Close()
	l.releaseOnce.Do(l.release)
	return err
}
func (l *limitConn) SetKeepAlive(bool) error                { return nil }
func (l *limitConn) SetKeepAlivePeriod(time.Duration) error { return nil }

type tcpEmbed struct{ *net.TCPConn }

type readAhead struct {
	net.Conn
	buf []byte
}

func (r *readAhead) Read(b []byte) (int, error) { return r.Conn.Read(b) }

type valueWrite struct{ net.Conn }

func (v valueWrite) Write(b []byte) (int, error) { return v.Conn.Write(b) }

type ownDeadline struct{ net.Conn }

func (o *ownDeadline) SetDeadline(time.Time) error { return nil }

type ownExtra struct{ net.Conn }

func (o *ownExtra) Stats() int { return 0 }

type twoEmbedded struct {
	net.Conn
	sync.Mutex
}

type hidden struct{ conn }
type conn = net.Conn

type generic[T any] struct {
	net.Conn
	v T
}

func TestSocketBeneath(t *testing.T) {
	a, b := tcpPair(t)
	_ = b
	release := func() {}
	for _, tc := range []struct {
		name   string
		c      net.Conn
		bypass bool
	}{
		{"a *net.TCPConn is its own socket", a, true},
		{"an etcd-style limit conn is bypassed", &limitConn{Conn: a, release: release}, true},
		{"a struct embedding *net.TCPConn is bypassed", &tcpEmbed{a}, true},
		{"a value struct embedding *net.TCPConn is bypassed", tcpEmbed{a}, true},
		{"wrappers over wrappers are bypassed", &limitConn{Conn: &tcpEmbed{a}, release: release}, true},
		{"a wrapper defining Read stays", &readAhead{Conn: a}, false},
		{"a wrapper defining Write with a value receiver stays", &valueWrite{a}, false},
		{"a wrapper over one that stays, stays", &limitConn{Conn: &readAhead{Conn: a}, release: release}, false},
		{"a wrapper defining SetDeadline stays", &ownDeadline{a}, false},
		{"a wrapper defining a method of its own stays", &ownExtra{a}, false},
		{"a wrapper embedding two fields stays", &twoEmbedded{Conn: a}, false},
		{"a wrapper embedding its conn unexported stays", &hidden{a}, false},
		{"a generic wrapper stays", &generic[int]{Conn: a}, false},
		{"a *tls.Conn stays", tls.Server(a, &tls.Config{}), false},
		{"a wrapper of nothing stays", &limitConn{release: release}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, why := socketBeneath(tc.c)
			if got := sock != nil; got != tc.bypass {
				t.Fatalf("socketBeneath(%T) = %v (%s), want a socket: %v", tc.c, sock, why, tc.bypass)
			}
			if tc.bypass && sock != net.Conn(a) {
				t.Fatalf("socketBeneath(%T) = %T, want the *net.TCPConn", tc.c, sock)
			}
			if !tc.bypass && why == "" {
				t.Fatalf("socketBeneath(%T) gives no reason", tc.c)
			}
		})
	}
}

// tcpPair returns two ends of a loopback TCP conn, closed when the test ends.
func tcpPair(t *testing.T) (*net.TCPConn, *net.TCPConn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	s, err := l.Accept()
	if err != nil {
		c.Close()
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(); s.Close() })
	return c.(*net.TCPConn), s.(*net.TCPConn)
}
