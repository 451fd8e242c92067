package grpcopt

import (
	"crypto/tls"
	"net"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/netutil"
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

// cmuxConn is shaped as cmux's MuxConn: its Read replays the bytes the
// muxer read ahead to match a protocol.
type cmuxConn struct {
	net.Conn
	ahead []byte
}

func (c *cmuxConn) Read(b []byte) (int, error) {
	if len(c.ahead) > 0 {
		n := copy(b, c.ahead)
		c.ahead = c.ahead[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}

// rateLimited is a rate limiter's conn: it defines Read and Write.
type rateLimited struct{ net.Conn }

func (r *rateLimited) Read(b []byte) (int, error)  { return r.Conn.Read(b) }
func (r *rateLimited) Write(b []byte) (int, error) { return r.Conn.Write(b) }

// genericLimited is a generic rate limiter: its Read is its own.
type genericLimited[T any] struct {
	net.Conn
	v T
}

func (g *genericLimited[T]) Read(b []byte) (int, error) { return g.Conn.Read(b) }

// recordingListener keeps the last conn it accepted.
type recordingListener struct {
	net.Listener
	last net.Conn
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	l.last = c
	return c, err
}

// netutilConn returns a conn accepted from netutil.LimitListener (its
// unexported limitListenerConn) and the *net.TCPConn beneath it.
func netutilConn(t *testing.T) (net.Conn, net.Conn) {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rl := &recordingListener{Listener: l}
	ll := netutil.LimitListener(rl, 1)
	defer ll.Close()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	s, err := ll.Accept()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, rl.last
}

// TestWrapperHeuristic pins the reflection behind socketBeneath, one
// wrapper layer at a time, over every wrapper kind the docs name (package
// doc, ServerOption, README). None of them implements Bypassable, so each
// is judged by the two signs of the compiler's output that embeddedConn
// reads: a promoted method's code is "<autogenerated>", a generic type's
// name holds "[". A Go release that changes either fails here: a close-only
// wrapper would then be refused (and served by package net), or a wrapper
// that changes the byte stream would be bypassed.
func TestWrapperHeuristic(t *testing.T) {
	a, _ := tcpPair(t)
	nu, nuSock := netutilConn(t)
	for _, tc := range []struct {
		name  string
		c     net.Conn
		inner net.Conn // the conn beneath, if bypassed
		why   string   // part of the reason, if refused
	}{
		{"etcd's limit conn (embeds net.Conn, adds Close and keepalive setters) is bypassed",
			&limitConn{Conn: a, release: func() {}}, a, ""},
		{"netutil.LimitListener's conn is bypassed", nu, nuSock, ""},
		{"a struct embedding *net.TCPConn is bypassed", &tcpEmbed{a}, a, ""},
		{"a cmux-style conn replaying read-ahead bytes stays", &cmuxConn{Conn: a}, nil, "defines Read"},
		{"a rate limiter defining Read and Write stays", &rateLimited{a}, nil, "defines Read"},
		{"a *tls.Conn stays", tls.Server(a, &tls.Config{}), nil, "defines "},
		{"a generic wrapper stays", &genericLimited[int]{Conn: a}, nil, "generic type"},
		{"a generic wrapper with no method of its own stays", &generic[int]{Conn: a}, nil, "generic type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if _, ok := tc.c.(Bypassable); ok {
				t.Fatalf("%T implements Bypassable: the case would not test the reflection", tc.c)
			}
			inner, why := embeddedConn(tc.c)
			if tc.inner != nil {
				if inner != tc.inner {
					t.Fatalf("embeddedConn(%T) = %T (%s), want the conn it embeds, %T", tc.c, inner, why, tc.inner)
				}
				return
			}
			if inner != nil || !strings.Contains(why, tc.why) {
				t.Fatalf("embeddedConn(%T) = %T (%q), want none, for a reason containing %q", tc.c, inner, why, tc.why)
			}
		})
	}
	// The sign itself, for the compiler at hand: a promoted Read is
	// compiler-made, a defined one is not.
	for _, tc := range []struct {
		t    reflect.Type
		want bool
	}{
		{reflect.TypeFor[*limitConn](), true},
		{reflect.TypeFor[*tcpEmbed](), true},
		{reflect.TypeFor[*cmuxConn](), false},
		{reflect.TypeFor[*rateLimited](), false},
	} {
		m, _ := tc.t.MethodByName("Read")
		if got := autogenerated(m.Func.Pointer()); got != tc.want {
			t.Errorf("autogenerated(%v.Read) = %v, want %v", tc.t, got, tc.want)
		}
	}
}

// Declared is a wrapper (exported, so that a wrapper can embed it as
// netutil and etcd embed their conn) reflection refuses (generic, with a Read of its
// own that only calls its conn's) that declares itself Bypassable.
type Declared[T any] struct {
	net.Conn
	v T
}

func (d *Declared[T]) Read(b []byte) (int, error) { return d.Conn.Read(b) }
func (d *Declared[T]) BypassConn() net.Conn       { return d.Conn }

// forwarding forwards to an unexported field and declares Bypassable.
type forwarding struct {
	conn
	release func()
}

func (f *forwarding) BypassConn() net.Conn { return f.conn }

// limitOverDeclared is a close-only wrapper over a Bypassable one: it
// promotes BypassConn, and is judged by reflection.
type limitOverDeclared struct{ *Declared[int] }

// limiterOverDeclared is a rate limiter over a Bypassable wrapper: it
// promotes BypassConn but defines Write, so the promise is not its own.
type limiterOverDeclared struct{ *Declared[int] }

func (l *limiterOverDeclared) Write(b []byte) (int, error) { return l.Declared.Write(b) }

// nothingBeneath declares Bypassable but names no conn.
type nothingBeneath struct{ net.Conn }

func (nothingBeneath) BypassConn() net.Conn { return (*net.TCPConn)(nil) }

// TestBypassable: a wrapper that implements Bypassable is looked through
// whatever reflection would say of it, and one that only promotes the
// method from an embedded field is judged by reflection.
func TestBypassable(t *testing.T) {
	a, _ := tcpPair(t)
	for _, tc := range []struct {
		name   string
		c      net.Conn
		bypass bool
		why    string
	}{
		{"a generic wrapper defining Read, declared, is bypassed", &Declared[int]{Conn: a}, true, ""},
		{"a wrapper forwarding to an unexported field, declared, is bypassed", &forwarding{conn: a}, true, ""},
		{"a declared wrapper over etcd's limit conn is bypassed", &Declared[int]{Conn: &limitConn{Conn: a, release: func() {}}}, true, ""},
		{"a close-only wrapper over a declared one is bypassed", &limitOverDeclared{&Declared[int]{Conn: a}}, true, ""},
		{"a rate limiter promoting a declared wrapper's BypassConn stays", &limiterOverDeclared{&Declared[int]{Conn: a}}, false, "defines Write"},
		{"a declared wrapper over a rate limiter stays", &Declared[int]{Conn: &rateLimited{a}}, false, "defines Read"},
		{"a declared wrapper naming no conn stays", nothingBeneath{a}, false, "BypassConn returns no conn"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			sock, why := socketBeneath(tc.c)
			if tc.bypass {
				if sock != net.Conn(a) {
					t.Fatalf("socketBeneath(%T) = %T (%s), want the *net.TCPConn", tc.c, sock, why)
				}
				return
			}
			if sock != nil || !strings.Contains(why, tc.why) {
				t.Fatalf("socketBeneath(%T) = %T (%q), want none, for a reason containing %q", tc.c, sock, why, tc.why)
			}
		})
	}
}
