package etcd_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// TestMain checks for leaked goroutines with nothing ignored beyond the
// default hub: once Etcd.Close and Client.Close have returned, etcd v3.7.3's
// server and clientv3 leave no goroutine of their own running (goleak's
// retries wait out those on their way out).
func TestMain(m *testing.M) { testutil.VerifyTestMain(m) }

// Traffic sizes the issue asks for.
const (
	nPuts   = 1000
	nEvents = 50
	workers = 8 // concurrent putters: several streams on one conn at once
)

// waitBound bounds every wait on a condition; generous, for a loaded machine.
const waitBound = time.Minute

// TestEtcdOnHub runs etcd's embedded server with its gRPC server on one hub
// and clientv3 on another, both set up only through etcd's public
// configuration, checks every result of a mixed workload, proves from the
// hubs' counters that both sides' conns were on their hubs, and stops etcd
// gracefully, leaving no fd on either hub.
func TestEtcdOnHub(t *testing.T) {
	serverHub := hubtest.NewHubUnchecked(t)
	clientHub := hubtest.NewHubUnchecked(t)
	before := grpcopt.ReadServerStats()

	// One URL for gRPC alone, one for HTTP alone: with ListenClientHttpUrls
	// set, etcd serves the ListenClientUrls port with grpc.Server.Serve
	// directly, without cmux in between (see the README's etcd section).
	// Its accepted conns are still etcd's limit-listener conns, which
	// ServerOption must see through.
	urls := loopbackURLs(t, 3)
	grpcURL, httpURL, peerURL := urls[0], urls[1], urls[2]
	cfg := newConfig(t, grpcURL, peerURL)
	cfg.ListenClientHttpUrls = []url.URL{httpURL}
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{grpcopt.ServerOption(serverHub, nil)}
	e, closeEtcd := startEtcd(t, cfg)
	cli, closeClient := newClient(t, grpcURL, clientHub)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	watchCtx, cancelWatch := context.WithCancel(ctx)
	defer cancelWatch()
	events := startWatch(t, watchCtx, cli, "/watch/")

	putAndGetPrefix(t, ctx, cli)
	putAndWatch(t, ctx, cli, events)

	// Both watch and put streams are open now: the counters show where
	// the conns live.
	checkOnHub(t, "server", serverHub, "etcd's accepted conns were served by package net, not the hub")
	checkOnHub(t, "client", clientHub, "clientv3's conns were dialed by package net, not the hub")
	stats := serverStatsSince(before)
	t.Logf("grpcopt.ReadServerStats during traffic: %+v", stats)
	if stats.Unwrapped == 0 || stats.OffHub != 0 {
		t.Errorf("grpcopt server stats during traffic: %+v; want every conn taken from beneath etcd's limit-listener conn (Unwrapped > 0) and none left to package net (OffHub 0)", stats)
	}

	// etcd's conn is no *net.TCPConn, so grpc-go itself would leave the
	// socket's TCP_USER_TIMEOUT at 0; the hub conn gets the 20 s grpc-go
	// derives from its (and etcd's) default keepalive.
	if timeouts, fds, ok := acceptedUserTimeouts(grpcURL.Host); ok {
		t.Logf("TCP_USER_TIMEOUT of the accepted sockets: %v (%d fds)", timeouts, fds)
		if len(timeouts) == 0 {
			t.Errorf("no accepted socket found on %s", grpcURL.Host)
		}
		for _, d := range timeouts {
			if d != 20*time.Second {
				t.Errorf("an accepted socket on %s has TCP_USER_TIMEOUT %v; want 20s", grpcURL.Host, d)
			}
		}
	}

	leaseWithKeepAlive(t, ctx, cli)
	txn(t, ctx, cli)

	// A graceful stop waits for open streams (a watch is one, and so is
	// clientv3's lease keep-alive stream), and etcd cuts them with Stop
	// only once its request timeout has passed. Closing them first leaves
	// an idle conn, so Close returns early exactly when the GOAWAY
	// exchange and both ends' close went through the hubs.
	cancelWatch()
	for range events { // closed once the watch has ended
	}
	if err := cli.Watcher.Close(); err != nil {
		t.Errorf("closing the watcher: %v", err)
	}
	if err := cli.Lease.Close(); err != nil {
		t.Errorf("closing the lessor: %v", err)
	}

	timeout := e.Server.Cfg.ReqTimeout()
	start := time.Now()
	closeEtcd()
	took := time.Since(start)
	t.Logf("etcd Close took %v (its graceful-stop timeout is %v)", took, timeout)
	if took >= timeout {
		t.Errorf("etcd Close took %v, not under its request timeout %v: the graceful stop did not complete", took, timeout)
	}
	waitRegistered(t, "server", serverHub)

	if err := closeClient(); err != nil {
		t.Errorf("closing the client: %v", err)
	}
	waitRegistered(t, "client", clientHub)
}

// TestEtcdSharedPortStaysOffHub runs etcd with its default client port,
// where cmux sniffs each conn to tell HTTP/1 from gRPC and hands gRPC conns
// to grpc-go as *cmux.MuxConn values that replay the bytes read ahead. Such
// a conn must not be bypassed: it works, is served by package net, and is
// counted in ReadServerStats().OffHub; the server hub never sees it. HTTP/1
// on the same port works as before.
func TestEtcdSharedPortStaysOffHub(t *testing.T) {
	serverHub := hubtest.NewHubUnchecked(t)
	clientHub := hubtest.NewHubUnchecked(t)
	before := grpcopt.ReadServerStats()

	urls := loopbackURLs(t, 2)
	clientURL, peerURL := urls[0], urls[1]
	cfg := newConfig(t, clientURL, peerURL) // no ListenClientHttpUrls: cmux
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{grpcopt.ServerOption(serverHub, nil)}
	_, closeEtcd := startEtcd(t, cfg)
	cli, closeClient := newClient(t, clientURL, clientHub)

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := cli.Put(ctx, "/shared", "port"); err != nil {
		t.Fatalf("put: %v", err)
	}
	get, err := cli.Get(ctx, "/shared")
	if err != nil || get.Count != 1 || string(get.Kvs[0].Value) != "port" {
		t.Fatalf("get: %+v, %v; want /shared=port", get, err)
	}
	getVersion(t, ctx, clientURL)

	s := serverHub.Stats()
	stats := serverStatsSince(before)
	t.Logf("server hub: Registered %d, Events %d; grpcopt.ReadServerStats: %+v", s.Registered, s.Events, stats)
	if s.Registered != 0 || s.Events != 0 {
		t.Errorf("server hub: Registered %d, Events %d; want 0: a cmux conn was bypassed", s.Registered, s.Events)
	}
	if stats.Handshakes == 0 || stats.OffHub != stats.Handshakes || stats.Unwrapped != 0 {
		t.Errorf("grpcopt server stats: %+v; want every handshake counted OffHub and none unwrapped", stats)
	}
	checkOnHub(t, "client", clientHub, "clientv3's conns were dialed by package net, not the hub")

	closeEtcd()
	if err := closeClient(); err != nil {
		t.Errorf("closing the client: %v", err)
	}
	waitRegistered(t, "client", clientHub)
}

// TestEtcdSharedPortRequireHubRefuses runs etcd's default shared port with
// Config.RequireHub: every gRPC conn there is a *cmux.MuxConn, so every one
// is refused (and counted), and a client gets no answer; HTTP/1 on the same
// port is not grpc-go's and still works.
func TestEtcdSharedPortRequireHubRefuses(t *testing.T) {
	serverHub := hubtest.NewHubUnchecked(t)
	clientHub := hubtest.NewHubUnchecked(t)
	before := grpcopt.ReadServerStats()

	urls := loopbackURLs(t, 2)
	clientURL, peerURL := urls[0], urls[1]
	cfg := newConfig(t, clientURL, peerURL) // no ListenClientHttpUrls: cmux
	cfg.GRPCAdditionalServerOptions = []grpc.ServerOption{
		grpcopt.Config{Hub: serverHub, RequireHub: true}.ServerOption(nil)}
	_, closeEtcd := startEtcd(t, cfg)
	cli, closeClient := newClient(t, clientURL, clientHub)

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, err := cli.Put(ctx, "/refused", "yes")
	// clientv3 retries Unavailable until the context ends, then returns
	// the context's error.
	if code := status.Code(err); code != codes.Unavailable && code != codes.DeadlineExceeded &&
		!errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("put through a refused conn: %v (code %v); want Unavailable or the deadline", err, code)
	}
	getVersion(t, context.Background(), clientURL)

	stats := serverStatsSince(before)
	t.Logf("grpcopt.ReadServerStats: %+v", stats)
	if stats.Handshakes == 0 || stats.OffHub != stats.Handshakes || stats.Unwrapped != 0 {
		t.Errorf("grpcopt server stats: %+v; want every handshake counted OffHub", stats)
	}
	if s := serverHub.Stats(); s.Registered != 0 {
		t.Errorf("server hub: Registered %d; want 0", s.Registered)
	}

	closeEtcd()
	if err := closeClient(); err != nil {
		t.Errorf("closing the client: %v", err)
	}
	waitRegistered(t, "client", clientHub)
}

// newConfig returns a single-member etcd config with a data dir of the
// test's, client and peer URLs as given, and etcd's warnings logged to t.
func newConfig(t *testing.T, client, peer url.URL) *embed.Config {
	t.Helper()
	cfg := embed.NewConfig()
	cfg.Name = "hubio"
	cfg.Dir = t.TempDir()
	if err := os.Chmod(cfg.Dir, 0o700); err != nil { // what etcd asks of a data dir
		t.Fatal(err)
	}
	cfg.ListenClientUrls = []url.URL{client}
	cfg.AdvertiseClientUrls = []url.URL{client}
	cfg.ListenPeerUrls = []url.URL{peer}
	cfg.AdvertisePeerUrls = []url.URL{peer}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.UnsafeNoFsync = true // a throwaway data dir: durability is not under test
	lg := zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel))
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(lg.Named("server"))
	return cfg
}

// startEtcd starts etcd and waits until it serves. The returned func
// closes it (once; etcd's Close panics the second time, closing Err()),
// and runs at cleanup too.
func startEtcd(t *testing.T, cfg *embed.Config) (*embed.Etcd, func()) {
	t.Helper()
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		t.Fatalf("embed.StartEtcd: %v", err)
	}
	closeEtcd := sync.OnceFunc(e.Close)
	t.Cleanup(closeEtcd)
	select {
	case <-e.Server.ReadyNotify():
	case err := <-e.Err():
		t.Fatalf("etcd failed to start: %v", err)
	case <-time.After(waitBound):
		t.Fatalf("etcd not ready after %v", waitBound)
	}
	return e, closeEtcd
}

// newClient returns a clientv3 client of endpoint whose conns are dialed on
// h. The returned func closes it (once), and runs at cleanup too.
func newClient(t *testing.T, endpoint url.URL, h *poller.Hub) (*clientv3.Client, func() error) {
	t.Helper()
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   []string{endpoint.String()},
		DialTimeout: waitBound,
		// clientv3 installs no dialer of its own and appends DialOptions
		// last, so this context dialer is the one grpc-go uses.
		DialOptions: []grpc.DialOption{grpcopt.DialOption(h)},
		Logger:      zaptest.NewLogger(t, zaptest.Level(zapcore.WarnLevel)).Named("client"),
	})
	if err != nil {
		t.Fatalf("clientv3.New: %v", err)
	}
	closeClient := sync.OnceValue(cli.Close)
	t.Cleanup(func() { closeClient() })
	return cli, closeClient
}

// serverStatsSince returns what grpcopt's server credentials did since
// before (the counters are the process's; tests here run one at a time).
func serverStatsSince(before grpcopt.ServerStats) grpcopt.ServerStats {
	now := grpcopt.ReadServerStats()
	return grpcopt.ServerStats{
		Handshakes: now.Handshakes - before.Handshakes,
		Unwrapped:  now.Unwrapped - before.Unwrapped,
		OffHub:     now.OffHub - before.OffHub,
	}
}

// getVersion asks etcd's HTTP/1 handler for /version on the client URL.
func getVersion(t *testing.T, ctx context.Context, u url.URL) {
	t.Helper()
	tr := &http.Transport{}
	defer tr.CloseIdleConnections() // no keep-alive goroutine outlives the test
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.JoinPath("version").String(), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := (&http.Client{Transport: tr}).Do(req)
	if err != nil {
		t.Fatalf("GET /version: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "etcdserver") {
		t.Fatalf("GET /version: %s %q, %v; want 200 with etcd's version", resp.Status, body, err)
	}
}

// loopbackURLs returns n http URLs on 127.0.0.1 whose ports were free a
// moment ago: etcd needs its client and peer URLs before it listens.
func loopbackURLs(t *testing.T, n int) []url.URL {
	t.Helper()
	urls := make([]url.URL, n)
	for i := range urls {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatalf("finding a free port: %v", err)
		}
		defer l.Close() // held until all n are found, so they differ
		urls[i] = url.URL{Scheme: "http", Host: l.Addr().String()}
	}
	return urls
}

// startWatch watches prefix and returns its channel once etcd has
// confirmed the watch, so no later put is missed.
func startWatch(t *testing.T, ctx context.Context, cli *clientv3.Client, prefix string) clientv3.WatchChan {
	t.Helper()
	wch := cli.Watch(ctx, prefix, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	select {
	case resp, ok := <-wch:
		if !ok || !resp.Created || resp.Err() != nil {
			t.Fatalf("watch on %q not created: ok %v, created %v, err %v", prefix, ok, resp.Created, resp.Err())
		}
	case <-time.After(waitBound):
		t.Fatalf("watch on %q not created after %v", prefix, waitBound)
	}
	return wch
}

// putAndGetPrefix puts nPuts keys from several goroutines, then reads them
// all back with one prefix get.
func putAndGetPrefix(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	revs := make([]int64, nPuts) // revs[i] is written by the worker that put key i
	errs := make(chan error, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < nPuts; i += workers {
				resp, err := cli.Put(ctx, fmt.Sprintf("/kv/%04d", i), fmt.Sprintf("v%04d", i))
				if err != nil {
					errs <- fmt.Errorf("put %d: %w", i, err)
					return
				}
				revs[i] = resp.Header.Revision
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	seen := make(map[int64]int, nPuts)
	for i, rev := range revs {
		if j, dup := seen[rev]; dup || rev <= 0 {
			t.Fatalf("put %d got revision %d (put %d has it too: %v)", i, rev, j, dup)
		}
		seen[rev] = i
	}

	resp, err := cli.Get(ctx, "/kv/", clientv3.WithPrefix())
	if err != nil {
		t.Fatalf("prefix get: %v", err)
	}
	if resp.Count != nPuts || len(resp.Kvs) != nPuts {
		t.Fatalf("prefix get: count %d, %d kvs; want %d", resp.Count, len(resp.Kvs), nPuts)
	}
	for i, kv := range resp.Kvs { // sorted by key
		key, val := fmt.Sprintf("/kv/%04d", i), fmt.Sprintf("v%04d", i)
		if string(kv.Key) != key || string(kv.Value) != val || kv.ModRevision != revs[i] || kv.Version != 1 {
			t.Fatalf("prefix get, kv %d: %q=%q at revision %d version %d; want %q=%q at %d version 1",
				i, kv.Key, kv.Value, kv.ModRevision, kv.Version, key, val, revs[i])
		}
	}
}

// putAndWatch puts nEvents keys under the watched prefix and checks that
// the watch delivers each as a put event, in order.
func putAndWatch(t *testing.T, ctx context.Context, cli *clientv3.Client, events clientv3.WatchChan) {
	t.Helper()
	revs := make([]int64, nEvents)
	for i := range revs {
		resp, err := cli.Put(ctx, fmt.Sprintf("/watch/%02d", i), fmt.Sprintf("w%02d", i))
		if err != nil {
			t.Fatalf("put /watch/%02d: %v", i, err)
		}
		revs[i] = resp.Header.Revision
	}
	deadline := time.After(waitBound)
	for got := 0; got < nEvents; {
		select {
		case resp, ok := <-events:
			if !ok || resp.Err() != nil {
				t.Fatalf("watch ended after %d of %d events: ok %v, err %v", got, nEvents, ok, resp.Err())
			}
			for _, ev := range resp.Events {
				key, val := fmt.Sprintf("/watch/%02d", got), fmt.Sprintf("w%02d", got)
				if got == nEvents || ev.Type != clientv3.EventTypePut || string(ev.Kv.Key) != key ||
					string(ev.Kv.Value) != val || ev.Kv.ModRevision != revs[got] {
					t.Fatalf("watch event %d: %v %q=%q at revision %d; want PUT %q=%q at %d",
						got, ev.Type, ev.Kv.Key, ev.Kv.Value, ev.Kv.ModRevision, key, val, revs[min(got, nEvents-1)])
				}
				got++
			}
		case <-deadline:
			t.Fatalf("watch delivered %d of %d events in %v", got, nEvents, waitBound)
		}
	}
}

// leaseWithKeepAlive grants a lease, attaches a key, keeps the lease alive
// for two renewals, then revokes it and checks the key went with it.
func leaseWithKeepAlive(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	const ttl = 6 // seconds; clientv3 renews every ttl/3
	grant, err := cli.Grant(ctx, ttl)
	if err != nil || grant.Error != "" || grant.ID == clientv3.NoLease || grant.TTL != ttl {
		t.Fatalf("grant: %+v, %v; want a lease of %d s", grant, err, ttl)
	}
	if _, err := cli.Put(ctx, "/lease/key", "leased", clientv3.WithLease(grant.ID)); err != nil {
		t.Fatalf("put with lease: %v", err)
	}

	kaCtx, stopKeepAlive := context.WithCancel(ctx)
	defer stopKeepAlive()
	kas, err := cli.KeepAlive(kaCtx, grant.ID)
	if err != nil {
		t.Fatalf("keepalive: %v", err)
	}
	deadline := time.After(waitBound)
	for n := 0; n < 2; n++ { // the first renewal is sent at once, the second ttl/3 later
		select {
		case ka, ok := <-kas:
			if !ok {
				t.Fatalf("keepalive channel closed after %d renewals", n)
			}
			if ka.ID != grant.ID || ka.TTL != ttl {
				t.Fatalf("keepalive response %d: lease %x TTL %d; want lease %x renewed to %d", n, ka.ID, ka.TTL, grant.ID, ttl)
			}
		case <-deadline:
			t.Fatalf("%d keepalive responses in %v; want 2", n, waitBound)
		}
	}
	ttlResp, err := cli.TimeToLive(ctx, grant.ID, clientv3.WithAttachedKeys())
	if err != nil || ttlResp.TTL <= 0 || len(ttlResp.Keys) != 1 || string(ttlResp.Keys[0]) != "/lease/key" {
		t.Fatalf("time to live: %+v, %v; want a live lease holding /lease/key", ttlResp, err)
	}
	stopKeepAlive()

	if _, err := cli.Revoke(ctx, grant.ID); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	get, err := cli.Get(ctx, "/lease/key")
	if err != nil || get.Count != 0 {
		t.Fatalf("get after revoke: %+v, %v; want the leased key gone", get, err)
	}
}

// txn runs one transaction whose comparison holds and one whose does not,
// and checks which branch each ran.
func txn(t *testing.T, ctx context.Context, cli *clientv3.Client) {
	t.Helper()
	ok, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("/kv/0000"), "=", "v0000"),
			clientv3.Compare(clientv3.Version("/kv/0001"), "=", 1)).
		Then(clientv3.OpPut("/txn/branch", "then"), clientv3.OpGet("/kv/0001")).
		Else(clientv3.OpPut("/txn/branch", "else")).
		Commit()
	if err != nil || !ok.Succeeded || len(ok.Responses) != 2 {
		t.Fatalf("txn that holds: %+v, %v; want the then branch with 2 responses", ok, err)
	}
	if kvs := ok.Responses[1].GetResponseRange().GetKvs(); len(kvs) != 1 || string(kvs[0].Value) != "v0001" {
		t.Fatalf("txn that holds: get /kv/0001 returned %v; want v0001", kvs)
	}

	notOK, err := cli.Txn(ctx).
		If(clientv3.Compare(clientv3.Value("/kv/0000"), "=", "something else")).
		Then(clientv3.OpPut("/txn/branch", "then")).
		Else(clientv3.OpPut("/txn/branch", "else")).
		Commit()
	if err != nil || notOK.Succeeded || len(notOK.Responses) != 1 {
		t.Fatalf("txn that fails: %+v, %v; want the else branch with 1 response", notOK, err)
	}
	get, err := cli.Get(ctx, "/txn/branch")
	if err != nil || get.Count != 1 || string(get.Kvs[0].Value) != "else" || get.Kvs[0].Version != 2 {
		t.Fatalf("after both txns: %+v, %v; want /txn/branch=else at version 2", get, err)
	}
}

// checkOnHub reports whether h holds conns (Stats().Conns, the counter
// the README points to) and has delivered readiness events: the proof that
// conns are on it.
func checkOnHub(t *testing.T, side string, h *poller.Hub, otherwise string) {
	t.Helper()
	s := h.Stats()
	t.Logf("%s hub during traffic: Conns %d, Registered %d, Events %d", side, s.Conns, s.Registered, s.Events)
	if s.Conns <= 0 || s.Events == 0 {
		t.Errorf("%s hub during traffic: Conns %d, Events %d; want both > 0: %s", side, s.Conns, s.Events, otherwise)
	}
}

// waitRegistered waits until h holds no fd.
func waitRegistered(t *testing.T, side string, h *poller.Hub) {
	t.Helper()
	deadline := time.Now().Add(waitBound)
	for h.Stats().Registered != 0 {
		if time.Now().After(deadline) {
			t.Errorf("%s hub still has %d registered fds %v after closing", side, h.Stats().Registered, waitBound)
			return
		}
		time.Sleep(10 * time.Millisecond) // polling a condition, not synchronising
	}
}
