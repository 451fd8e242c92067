package grpcopt_test

import (
	"bufio"
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// proxyTarget is the target the proxy tests dial: a reserved name that
// nothing resolves. The test proxy never resolves it (it sends every tunnel
// to its backend on loopback), and the tests' resolver answers no name, so
// a dial that bypasses the proxy fails without sending a packet.
const (
	proxyTargetHost = "grpc.test"
	proxyTarget     = "passthrough:///" + proxyTargetHost + ":443"
)

// connectProxy is an HTTP CONNECT proxy on loopback that records each
// request's raw header block and answers with status. With 200 it connects
// to backend (whatever host the request names) and relays bytes both ways,
// or, when backend is empty, writes extra after the response and holds the
// conn. With 0 it never answers. Its goroutines end by Close, which the test's
// cleanup calls.
type connectProxy struct {
	lis     net.Listener
	backend string
	status  int
	extra   string

	wg    sync.WaitGroup
	mu    sync.Mutex // guards reqs and conns
	reqs  []string   // raw request header blocks, in arrival order
	conns map[net.Conn]struct{}
}

func startConnectProxy(t *testing.T, backend string, status int, extra string) *connectProxy {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &connectProxy{lis: lis, backend: backend, status: status, extra: extra, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(p.Close)
	return p
}

// URL returns the proxy's URL, with userinfo when user is not empty.
func (p *connectProxy) URL(user string) string {
	if user != "" {
		user += "@"
	}
	return "http://" + user + p.lis.Addr().String()
}

// Requests returns the raw header blocks received so far.
func (p *connectProxy) Requests() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]string(nil), p.reqs...)
}

// Close stops accepting, closes every conn and waits for the goroutines.
func (p *connectProxy) Close() {
	p.lis.Close()
	p.mu.Lock()
	for c := range p.conns {
		c.Close()
	}
	p.conns = nil
	p.mu.Unlock()
	p.wg.Wait()
}

// track adds c to the conns Close closes; false once closed (c is closed).
func (p *connectProxy) track(c net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		c.Close()
		return false
	}
	p.conns[c] = struct{}{}
	return true
}

func (p *connectProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.lis.Accept()
		if err != nil {
			return
		}
		if !p.track(c) {
			return
		}
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			defer c.Close()
			p.handle(c)
		}()
	}
}

func (p *connectProxy) handle(c net.Conn) {
	br := bufio.NewReader(c)
	var raw strings.Builder
	for {
		line, err := br.ReadString('\n')
		if err != nil {
			return
		}
		raw.WriteString(line)
		if line == "\r\n" {
			break
		}
	}
	p.mu.Lock()
	p.reqs = append(p.reqs, raw.String())
	p.mu.Unlock()
	switch {
	case p.status == 0:
		io.Copy(io.Discard, br) // hold until the client or Close ends it
		return
	case p.status != http.StatusOK:
		fmt.Fprintf(c, "HTTP/1.1 %d %s\r\nProxy-Authenticate: Basic realm=\"test\"\r\nContent-Length: 0\r\n\r\n",
			p.status, http.StatusText(p.status))
		return
	case p.backend == "":
		io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"+p.extra)
		io.Copy(io.Discard, br)
		return
	}
	b, err := net.Dial("tcp", p.backend) // always loopback
	if err != nil || !p.track(b) {
		return
	}
	defer b.Close()
	if _, err := io.WriteString(c, "HTTP/1.1 200 Connection established\r\n\r\n"); err != nil {
		return
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		io.Copy(b, br)
		b.Close()
	}()
	io.Copy(c, b)
	c.Close()
}

// startEchoBackend serves the echo service with a standard server on
// loopback and returns its address.
func startEchoBackend(t *testing.T) string {
	t.Helper()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := grpc.NewServer()
	testutil.RegisterEchoServer(srv, &testutil.EchoServer{})
	go srv.Serve(lis)
	t.Cleanup(srv.Stop)
	return lis.Addr().String()
}

// setProxyEnv sets the proxy environment for the test, lower-case names
// emptied so that the machine's own settings do not leak in.
func setProxyEnv(t *testing.T, httpsProxy, noProxy string) {
	t.Helper()
	for _, name := range []string{"http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY"} {
		t.Setenv(name, "")
	}
	t.Setenv("HTTPS_PROXY", httpsProxy)
	t.Setenv("NO_PROXY", noProxy)
}

// noDNS is a resolver that answers from /etc/hosts only: a name it would
// ask DNS about fails, without a packet sent. lookups counts those names.
func noDNS(lookups *atomic.Int64) *net.Resolver {
	return &net.Resolver{PreferGo: true, Dial: func(context.Context, string, string) (net.Conn, error) {
		lookups.Add(1)
		return nil, errors.New("test resolver: no DNS")
	}}
}

// hubProxyClient dials target with cfg's dialer on a resolver without DNS.
func hubProxyClient(t *testing.T, cfg grpcopt.Config, target string, lookups *atomic.Int64) *testutil.EchoClient {
	t.Helper()
	cc, err := grpc.NewClient(target,
		grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpcopt.WithResolver(cfg, noDNS(lookups)).DialOption())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cc.Close() })
	return testutil.NewEchoClient(cc)
}

func unary(c *testutil.EchoClient) error {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	got, err := c.Unary(ctx, []byte("ping"))
	if err == nil && string(got) != "ping" {
		err = fmt.Errorf("echo returned %q", got)
	}
	return err
}

const plainProxyChildEnv = "HUBIO_PROXY_PLAIN_CHILD"

// plainProxyChild makes one RPC to proxyTarget with a plain grpc-go client
// (its own dialer), through the proxy in its environment. The process's
// default resolver answers no name, so that a client that went around the
// proxy would fail without a DNS query.
func plainProxyChild() error {
	var lookups atomic.Int64
	net.DefaultResolver = noDNS(&lookups)
	cc, err := grpc.NewClient(proxyTarget, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer cc.Close()
	return unary(testutil.NewEchoClient(cc))
}

func TestDialOptionTunnelsThroughTheEnvironmentsProxyAsGRPCGoDoes(t *testing.T) {
	if os.Getenv(plainProxyChildEnv) == "1" {
		if err := plainProxyChild(); err != nil {
			t.Fatalf("grpc-go's own client: %v", err)
		}
		return
	}
	p := startConnectProxy(t, startEchoBackend(t), http.StatusOK, "")
	setProxyEnv(t, p.URL("alice:s3cret"), "localhost,other.test")
	h := hubtest.NewHubUnchecked(t)
	var lookups atomic.Int64
	c := hubProxyClient(t, grpcopt.Config{Hub: h}, proxyTarget, &lookups)
	if err := unary(c); err != nil {
		t.Fatalf("RPC through the proxy: %v", err)
	}
	if n := h.Stats().Registered; n != 1 {
		t.Errorf("client hub has %d fds registered, want 1: the tunnel's conn", n)
	}
	if n := lookups.Load(); n != 0 {
		t.Errorf("the hub client asked DNS %d times; the proxy resolves the target", n)
	}
	reqs := p.Requests()
	if len(reqs) != 1 {
		t.Fatalf("proxy saw %d CONNECTs, want 1: %q", len(reqs), reqs)
	}
	hubReq := reqs[0]
	t.Logf("the hub client's CONNECT:\n%s", hubReq)
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(hubReq)))
	if err != nil {
		t.Fatalf("parsing %q: %v", hubReq, err)
	}
	wantAuth := "Basic " + base64.StdEncoding.EncodeToString([]byte("alice:s3cret"))
	if req.Method != http.MethodConnect || req.RequestURI != "grpc.test:443" || req.Host != "grpc.test:443" ||
		req.Header.Get("Proxy-Authorization") != wantAuth || req.Header.Get("User-Agent") != "grpc-go/"+grpc.Version {
		t.Errorf("hub client's request:\n%s\nwant CONNECT grpc.test:443, Host grpc.test:443, Proxy-Authorization %s, User-Agent grpc-go/%s",
			hubReq, wantAuth, grpc.Version)
	}

	// grpc-go's own dialer, in a process of its own: it reads the proxy
	// environment once per process.
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(os.Environ(), plainProxyChildEnv+"=1")
	if out, err := cmd.CombinedOutput(); err != nil || !strings.Contains(string(out), "--- PASS") {
		t.Fatalf("child with grpc-go's own client: %v\n%s", err, out)
	}
	reqs = p.Requests()
	if len(reqs) != 2 {
		t.Fatalf("proxy saw %d CONNECTs after grpc-go's client, want 2: %q", len(reqs), reqs)
	}
	if reqs[1] != hubReq {
		t.Errorf("the hub client's CONNECT differs from grpc-go's:\nhub:\n%s\ngrpc-go:\n%s", hubReq, reqs[1])
	}
}

func TestDialOptionBypassesTheProxyAsGRPCGoDoes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		noProxy string
		cfg     grpcopt.Config
	}{
		{name: "NO_PROXY names the target's host", noProxy: "grpc.test"},
		{name: "NO_PROXY names the target's domain", noProxy: "example.com, .test"},
		{name: "NO_PROXY names the target's host and port", noProxy: "grpc.test:443"},
		{name: "NO_PROXY is *", noProxy: "*"},
		{name: "Config.NoProxy is set", cfg: grpcopt.Config{NoProxy: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startConnectProxy(t, startEchoBackend(t), http.StatusOK, "")
			setProxyEnv(t, p.URL(""), tc.noProxy)
			tc.cfg.Hub = hubtest.NewHubUnchecked(t)
			var lookups atomic.Int64
			c := hubProxyClient(t, tc.cfg, proxyTarget, &lookups)
			err := unary(c)
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), "grpc.test") {
				t.Errorf("RPC to an unresolvable name, dialed directly: %v, want Unavailable naming grpc.test", err)
			}
			if n := lookups.Load(); n == 0 {
				t.Error("the direct dial never looked the target up")
			}
			if reqs := p.Requests(); len(reqs) != 0 {
				t.Errorf("proxy saw %q, want nothing", reqs)
			}
		})
	}
	t.Run("a loopback target, whatever NO_PROXY says", func(t *testing.T) {
		backend := startEchoBackend(t)
		p := startConnectProxy(t, backend, http.StatusOK, "")
		setProxyEnv(t, p.URL(""), "")
		var lookups atomic.Int64
		if err := unary(hubProxyClient(t, grpcopt.Config{Hub: hubtest.NewHubUnchecked(t)}, backend, &lookups)); err != nil {
			t.Fatalf("RPC to %s: %v", backend, err)
		}
		if reqs := p.Requests(); len(reqs) != 0 {
			t.Errorf("proxy saw %q, want nothing", reqs)
		}
	})
	t.Run("a unix socket", func(t *testing.T) {
		h := hubtest.NewHubUnchecked(t)
		e := testutil.StartEcho(t, testutil.WithHub(h), testutil.WithUnixSocket())
		p := startConnectProxy(t, "", http.StatusOK, "")
		setProxyEnv(t, p.URL(""), "")
		var lookups atomic.Int64
		if err := unary(hubProxyClient(t, grpcopt.Config{Hub: h}, e.Target, &lookups)); err != nil {
			t.Fatalf("RPC to %s: %v", e.Target, err)
		}
		if reqs := p.Requests(); len(reqs) != 0 {
			t.Errorf("proxy saw %q, want nothing", reqs)
		}
	})
	t.Run("NO_PROXY names another host", func(t *testing.T) {
		p := startConnectProxy(t, startEchoBackend(t), http.StatusOK, "")
		setProxyEnv(t, p.URL(""), "other.test,grpc.test:80")
		var lookups atomic.Int64
		if err := unary(hubProxyClient(t, grpcopt.Config{Hub: hubtest.NewHubUnchecked(t)}, proxyTarget, &lookups)); err != nil {
			t.Fatalf("RPC through the proxy: %v", err)
		}
		if reqs := p.Requests(); len(reqs) != 1 {
			t.Errorf("proxy saw %d CONNECTs, want 1", len(reqs))
		}
	})
}

func TestDialOptionReportsAProxysRefusal(t *testing.T) {
	for _, code := range []int{http.StatusProxyAuthRequired, http.StatusForbidden} {
		t.Run(http.StatusText(code), func(t *testing.T) {
			p := startConnectProxy(t, startEchoBackend(t), code, "")
			setProxyEnv(t, p.URL("alice:wrong"), "")
			h := hubtest.NewHubUnchecked(t)
			var lookups atomic.Int64
			err := unary(hubProxyClient(t, grpcopt.Config{Hub: h}, proxyTarget, &lookups))
			want := fmt.Sprintf("proxy refused CONNECT grpc.test:443: %d %s", code, http.StatusText(code))
			if status.Code(err) != codes.Unavailable || !strings.Contains(err.Error(), want) {
				t.Errorf("RPC: %v, want Unavailable with %q", err, want)
			}

			cfg := grpcopt.WithResolver(grpcopt.Config{Hub: h}, noDNS(&lookups))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := cfg.Dial(ctx, "grpc.test:443")
			var opErr *net.OpError
			if !errors.As(err, &opErr) || opErr.Op != "proxyconnect" || opErr.Net != "tcp" ||
				opErr.Addr.String() != p.lis.Addr().String() || !strings.Contains(err.Error(), want) {
				t.Errorf("Dial: %v, want a proxyconnect *net.OpError from the proxy's address with %q", err, want)
			}
			if c != nil {
				c.Close()
			}
			if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Registered == 0 }) {
				t.Errorf("refused conns left %d fds on the hub", h.Stats().Registered)
			}
		})
	}
}

func TestDialThroughProxyKeepsBytesReadAhead(t *testing.T) {
	for _, tc := range []struct {
		name, extra string
	}{
		{name: "nothing after the response: a *grpcopt.Conn"},
		{name: "server bytes after the response: read first", extra: "hello"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := startConnectProxy(t, "", http.StatusOK, tc.extra)
			setProxyEnv(t, p.URL(""), "")
			var lookups atomic.Int64
			cfg := grpcopt.WithResolver(grpcopt.Config{Hub: hubtest.NewHubUnchecked(t)}, noDNS(&lookups))
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			c, err := cfg.Dial(ctx, "grpc.test:443")
			if err != nil {
				t.Fatalf("Dial: %v", err)
			}
			defer c.Close()
			_, isHubConn := c.(*grpcopt.Conn)
			if tc.extra == "" {
				if !isHubConn {
					t.Errorf("Dial returned a %T, want *grpcopt.Conn (ReadOnReady)", c)
				}
				return
			}
			if isHubConn {
				t.Error("Dial returned a bare *grpcopt.Conn, which has lost the bytes read ahead")
			}
			got := make([]byte, len(tc.extra))
			if _, err := io.ReadFull(c, got); err != nil || string(got) != tc.extra {
				t.Errorf("read %q, %v; want %q", got, err, tc.extra)
			}
		})
	}
}

func TestDialThroughASilentProxyEndsWithItsContext(t *testing.T) {
	p := startConnectProxy(t, "", 0, "")
	setProxyEnv(t, p.URL(""), "")
	h := hubtest.NewHubUnchecked(t)
	var lookups atomic.Int64
	cfg := grpcopt.WithResolver(grpcopt.Config{Hub: h}, noDNS(&lookups))
	for _, tc := range []struct {
		name string
		ctx  func() (context.Context, context.CancelFunc)
		want error
	}{
		{name: "deadline", want: os.ErrDeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			return context.WithTimeout(context.Background(), 100*time.Millisecond)
		}},
		{name: "cancel", want: context.Canceled, ctx: func() (context.Context, context.CancelFunc) {
			ctx, cancel := context.WithCancel(context.Background())
			time.AfterFunc(100*time.Millisecond, cancel)
			return ctx, cancel
		}},
		{name: "Config.DialTimeout", want: os.ErrDeadlineExceeded, ctx: func() (context.Context, context.CancelFunc) {
			cfg.DialTimeout = 100 * time.Millisecond
			return context.WithCancel(context.Background())
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := tc.ctx()
			defer cancel()
			c, err := cfg.Dial(ctx, "grpc.test:443")
			var opErr *net.OpError
			if !errors.As(err, &opErr) || opErr.Op != "proxyconnect" || !errors.Is(err, tc.want) {
				t.Errorf("Dial: %v, want a proxyconnect *net.OpError matching %v", err, tc.want)
			}
			if c != nil {
				c.Close()
			}
		})
	}
	if !hubtest.WaitFor(10*time.Second, func() bool { return h.Stats().Registered == 0 }) {
		t.Errorf("failed handshakes left %d fds on the hub", h.Stats().Registered)
	}
}
