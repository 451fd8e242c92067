//go:build linux

package grpcopt_test

import (
	"context"
	"math"
	"os"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
	"github.com/hubio/hubio/testutil"
)

// tooLong is a timeout TCP_USER_TIMEOUT cannot hold (int32 milliseconds).
const tooLong = time.Duration(math.MaxInt32+1) * time.Millisecond

// badConfigs are Configs the forms that return an error refuse, each with
// the side that reads the bad field and the field's name.
var badConfigs = []struct {
	name           string
	cfg            grpcopt.Config
	server, client bool // the side(s) that must refuse it
	field          string
}{
	{"a negative server keepalive Timeout", grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Timeout: -time.Second}}, true, false, "ServerKeepalive.Timeout"},
	{"a server keepalive Timeout beyond int32 ms", grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Timeout: tooLong}}, true, false, "ServerKeepalive.Timeout"},
	{"a negative server keepalive Time", grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Time: -time.Second}}, true, false, "ServerKeepalive.Time"},
	{"a negative server MaxConnectionIdle", grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{MaxConnectionIdle: -time.Second}}, true, false, "ServerKeepalive.MaxConnectionIdle"},
	{"a negative client keepalive Timeout", grpcopt.Config{ClientKeepalive: &keepalive.ClientParameters{Timeout: -1}}, false, true, "ClientKeepalive.Timeout"},
	{"a client keepalive Timeout beyond int32 ms", grpcopt.Config{ClientKeepalive: &keepalive.ClientParameters{Timeout: tooLong}}, false, true, "ClientKeepalive.Timeout"},
	{"a negative client keepalive Time", grpcopt.Config{ClientKeepalive: &keepalive.ClientParameters{Time: -time.Second}}, false, true, "ClientKeepalive.Time"},
	{"a negative DialTimeout", grpcopt.Config{DialTimeout: -time.Second}, false, true, "Config.DialTimeout"},
	{"a sub-millisecond UserTimeout", grpcopt.Config{UserTimeout: time.Microsecond}, true, true, "Config.UserTimeout"},
	{"a negative UserTimeout", grpcopt.Config{UserTimeout: -time.Second}, true, true, "Config.UserTimeout"},
}

// TestEachSideRefusesOnlyItsOwnBadFields: ServerOptions and Listen refuse
// a bad server-side duration, DialOptions and Dial a bad client-side one,
// each naming the field, and neither side fails for the other's fields.
func TestEachSideRefusesOnlyItsOwnBadFields(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Hub = h
			check := func(form string, err error, refuse bool) {
				t.Helper()
				switch {
				case refuse && err == nil:
					t.Errorf("%s: nil error, want one naming %s", form, tc.field)
				case refuse && !(strings.Contains(err.Error(), tc.field) && strings.Contains(err.Error(), "out of range")):
					t.Errorf("%s: %v, want out of range naming %s", form, err, tc.field)
				case !refuse && err != nil:
					t.Errorf("%s: %v, want nil: it does not read %s", form, err, tc.field)
				}
			}
			_, err := cfg.ServerOptions(nil)
			check("ServerOptions", err, tc.server)
			l, err := cfg.Listen("tcp", "127.0.0.1:0")
			if err == nil {
				l.Close()
			}
			check("Listen", err, tc.server)
			_, err = cfg.DialOptions()
			check("DialOptions", err, tc.client)
			if tc.client {
				_, err := cfg.Dial(context.Background(), "127.0.0.1:1")
				check("Dial", err, true)
			}
		})
	}
}

// TestOneValueFormsNeverPanic: ServerOption, Credentials and DialOption
// take every Config the plural forms refuse, without panicking, and still
// serve and dial: each bad field is dropped or clamped.
func TestOneValueFormsNeverPanic(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	for _, tc := range badConfigs {
		t.Run(tc.name, func(t *testing.T) {
			cfg := tc.cfg
			cfg.Hub = h
			lis, err := grpcopt.Config{Hub: h}.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			var sopt, dopt = func() (o grpc.ServerOption, d grpc.DialOption) {
				defer func() {
					if p := recover(); p != nil {
						t.Fatalf("panic: %v", p)
					}
				}()
				cfg.Credentials(nil)
				return cfg.ServerOption(nil), cfg.DialOption()
			}()
			serveEcho(t, lis, sopt)
			cc, err := grpc.NewClient(lis.Addr().String(), grpc.WithTransportCredentials(insecure.NewCredentials()), dopt)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cc.Close() })
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if out, err := testutil.NewEchoClient(cc).Unary(ctx, []byte("ok")); err != nil || string(out) != "ok" {
				t.Fatalf("echo through the one-value forms: %q, %v", out, err)
			}
		})
	}
}

// TestOneValueFormsClampTheUserTimeout: what the one-value forms put on
// the socket in place of a value they cannot use: a negative one is
// dropped (the default applies), one beyond TCP_USER_TIMEOUT's range is
// clamped to its largest value. The caller's keepalive is not changed.
func TestOneValueFormsClampTheUserTimeout(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	kp := &keepalive.ServerParameters{Timeout: tooLong}
	for _, tc := range []struct {
		name string
		cfg  grpcopt.Config
		want int
	}{
		{"a negative UserTimeout is dropped", grpcopt.Config{Hub: h, UserTimeout: -time.Second}, 20000},
		{"a sub-millisecond UserTimeout becomes 1ms", grpcopt.Config{Hub: h, UserTimeout: time.Microsecond}, 1},
		{"a too long keepalive Timeout is clamped", grpcopt.Config{Hub: h, ServerKeepalive: kp}, math.MaxInt32},
		{"a negative keepalive Timeout is dropped", grpcopt.Config{Hub: h, ServerKeepalive: &keepalive.ServerParameters{Timeout: -1}}, 20000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, s := stdPair(t)
			conn, _, err := tc.cfg.Credentials(nil).ServerHandshake(s)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if got := userTimeout(t, conn); got != tc.want {
				t.Errorf("TCP_USER_TIMEOUT = %d ms, want %d", got, tc.want)
			}
		})
	}
	if kp.Timeout != tooLong {
		t.Errorf("the caller's ServerKeepalive.Timeout became %v", kp.Timeout)
	}
}

// TestOneValueFormsWarnNamingTheField runs in a child process with
// grpc-go's log at warning level: each one-value form given a bad field
// logs a warning that names it, as grpc.KeepaliveParams warns when it
// clamps Time.
func TestOneValueFormsWarnNamingTheField(t *testing.T) {
	out := inChild(t, "HUBIO_ONEVALUE_WARN_CHILD", func() error {
		grpcopt.Config{ServerKeepalive: &keepalive.ServerParameters{Time: -time.Second}}.ServerOption(nil)
		grpcopt.Config{ClientKeepalive: &keepalive.ClientParameters{Timeout: tooLong}}.DialOption()
		grpcopt.Config{DialTimeout: -time.Second}.DialOption()
		return nil
	}, "GRPC_GO_LOG_SEVERITY_LEVEL=warning", "GRPC_GO_LOG_VERBOSITY_LEVEL=0")
	if os.Getenv("HUBIO_ONEVALUE_WARN_CHILD") == "1" {
		return
	}
	for _, want := range []string{
		"WARNING: [hubio] grpcopt: ServerKeepalive.Time -1s out of range",
		"WARNING: [hubio] grpcopt: ClientKeepalive.Timeout " + tooLong.String() + " out of range",
		"WARNING: [hubio] grpcopt: Config.DialTimeout -1s out of range",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("no warning %q; output:\n%s", want, out)
		}
	}
}
