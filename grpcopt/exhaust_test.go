//go:build linux

package grpcopt_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/testutil"
)

// TestServerSurvivesFdExhaustion runs a hub gRPC server in a child process
// whose fds run out while a client keeps connecting: Accept fails with
// EMFILE (Temporary), grpc-go's Serve backs off instead of exiting, and once
// fds are freed the waiting conn is served and new clients work.
func TestServerSurvivesFdExhaustion(t *testing.T) {
	inChild(t, "HUBIO_GRPC_EXHAUST_CHILD", grpcExhaustChild)
}

// inChild runs the calling test again in a child process (this test binary)
// with env set to "1", where it runs child instead and reports; in the
// parent it returns the child's output, failing t unless child succeeded.
// extraEnv is added to the child's environment.
func inChild(t *testing.T, env string, child func() error, extraEnv ...string) string {
	if os.Getenv(env) == "1" {
		if err := child(); err != nil {
			fmt.Println("child: FAIL:", err)
			os.Exit(1)
		}
		fmt.Println("child: ok")
		return ""
	}
	cmd := exec.Command(os.Args[0], "-test.run=^"+t.Name()+"$", "-test.v")
	cmd.Env = append(append(os.Environ(), env+"=1"), extraEnv...)
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "child: ok") {
		t.Fatalf("child: %v\n%s", err, out)
	}
	return string(out)
}

// recordingListener keeps the errors Accept returns (to grpc-go's Serve).
type recordingListener struct {
	net.Listener
	errs chan error
}

func (l *recordingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		select {
		case l.errs <- err:
		default:
		}
	}
	return c, err
}

func grpcExhaustChild() error {
	h, err := poller.New()
	if err != nil {
		return err
	}
	defer h.Close()
	hl, err := grpcopt.Listen(h, "tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	lis := &recordingListener{Listener: hl, errs: make(chan error, 1024)}
	srv := grpc.NewServer(grpcopt.ServerOption(h, nil))
	testutil.RegisterEchoServer(srv, nil)
	served := make(chan error, 1)
	go func() { served <- srv.Serve(lis) }()
	defer srv.Stop()
	addr := lis.Addr().String()

	echo := func(timeout time.Duration) error {
		cc, err := grpc.NewClient(addr, grpc.WithTransportCredentials(insecure.NewCredentials()), grpcopt.DialOption(h))
		if err != nil {
			return err
		}
		defer cc.Close()
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		_, err = testutil.NewEchoClient(cc).Unary(ctx, []byte("x"), grpc.WaitForReady(true))
		return err
	}
	if err := echo(10 * time.Second); err != nil {
		return fmt.Errorf("echo before exhaustion: %v", err)
	}

	// Lower the limit a little above what is open, then fill it.
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return err
	}
	defer syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim)
	ents, _ := os.ReadDir("/proc/self/fd")
	low := lim
	low.Cur = uint64(len(ents) + 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		return err
	}
	var held []int
	defer func() {
		for _, fd := range held {
			syscall.Close(fd)
		}
	}()
	for {
		fd, err := syscall.Dup(0)
		if err != nil {
			break
		}
		held = append(held, fd)
	}
	// One fd for a client socket: it connects (the kernel accepts for the
	// listener), and the server's accept4 has no fd left.
	syscall.Close(held[len(held)-1])
	held = held[:len(held)-1]
	raw, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return fmt.Errorf("raw dial with one fd left: %v", err)
	}
	defer raw.Close()
	if _, err := raw.Write([]byte("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")); err != nil {
		return err
	}
	// Serve keeps running while it backs off on EMFILE.
	select {
	case err := <-served:
		return fmt.Errorf("Serve exited while fds were exhausted: %v", err)
	case <-time.After(300 * time.Millisecond):
	}
	// Free fds: the waiting conn is accepted (the server answers its
	// preface with SETTINGS) and new clients are served.
	for _, fd := range held[len(held)-16:] {
		syscall.Close(fd)
	}
	held = held[:len(held)-16]
	raw.SetReadDeadline(time.Now().Add(10 * time.Second))
	var b [9]byte
	if _, err := raw.Read(b[:]); err != nil {
		return fmt.Errorf("the conn that waited for an fd was not served: %v", err)
	}
	if err := echo(10 * time.Second); err != nil {
		return fmt.Errorf("echo after fds were freed: %v", err)
	}
	var sawEMFILE bool
	for len(lis.errs) > 0 {
		err := <-lis.errs
		ne, ok := err.(net.Error)
		if !ok || !ne.Temporary() || !errors.Is(err, syscall.EMFILE) {
			return fmt.Errorf("accept error %v: want a Temporary EMFILE", err)
		}
		sawEMFILE = true
	}
	if !sawEMFILE {
		return errors.New("accept never ran out of fds")
	}
	select {
	case err := <-served:
		return fmt.Errorf("Serve exited: %v", err)
	default:
	}
	return nil
}

// TestClosedHubIsLoggedOnceAtErrorLevel runs, in a child process with
// grpc-go's default logger, a server whose ServerOption hub is closed while
// it serves a standard listener: each conn fails its handshake, and the
// cause is logged once at error level (grpc-go logs the handshake failure
// itself at info level only, which is off by default), with how to
// recover, and every such conn is counted in ServerStats.HubClosed.
func TestClosedHubIsLoggedOnceAtErrorLevel(t *testing.T) {
	out := inChild(t, "HUBIO_GRPC_CLOSEDHUB_CHILD", closedHubChild,
		"GRPC_GO_LOG_SEVERITY_LEVEL=", "GRPC_GO_LOG_VERBOSITY_LEVEL=")
	if os.Getenv("HUBIO_GRPC_CLOSEDHUB_CHILD") == "1" {
		return
	}
	n := 0
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "ERROR: [hubio] grpcopt: moving the accepted conn onto the hub") &&
			strings.Contains(line, "poller: hub closed") {
			n++
		}
	}
	if n != 1 {
		t.Errorf("the child logged the closed hub %d times at error level, want once (three conns failed):\n%s", n, out)
	}
	for _, want := range []string{"stop it (grpc.Server.Stop", "serve again with options on a live hub", "ServerStats.HubClosed"} {
		if !strings.Contains(out, want) {
			t.Errorf("the log does not say %q:\n%s", want, out)
		}
	}
}

func closedHubChild() error {
	h, err := poller.New()
	if err != nil {
		return err
	}
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	st := new(grpcopt.ServerCounters)
	srv := grpc.NewServer(grpcopt.Config{Hub: h, Stats: st}.ServerOption(nil))
	testutil.RegisterEchoServer(srv, nil)
	go srv.Serve(lis)
	defer srv.Stop()
	h.Close()
	defer func() {
		if s := st.Read(); s.HubClosed < 3 || s.HubClosed != s.Handshakes {
			fmt.Printf("child: server stats %+v: want every handshake (at least 3) counted in HubClosed\n", s)
			os.Exit(1)
		}
	}()
	for range 3 {
		cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()))
		if err != nil {
			return err
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = testutil.NewEchoClient(cc).Unary(ctx, []byte("x"))
		cancel()
		cc.Close()
		if err == nil {
			return errors.New("an RPC succeeded on a server whose hub is closed")
		}
	}
	return nil
}
