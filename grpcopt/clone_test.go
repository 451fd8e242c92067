//go:build linux

package grpcopt_test

import (
	"testing"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/internal/hubtest"
)

// TestClonedCredentialsServeOffHubConns: credentials from Clone (as a
// wrapper combining credentials makes) serve a conn that stays off the hub
// as the original does, rather than panicking.
func TestClonedCredentialsServeOffHubConns(t *testing.T) {
	hubtest.Check(t)
	h := hubtest.NewHubUnchecked(t)
	_, s := stdPair(t)
	creds := grpcopt.Config{Hub: h}.Credentials(nil).Clone()
	conn, _, err := creds.ServerHandshake(&limitedWriter{s})
	if err != nil {
		t.Fatalf("ServerHandshake: %v", err)
	}
	if _, ok := conn.(*limitedWriter); !ok {
		t.Fatalf("ServerHandshake returned a %T, want the off-hub wrapper itself", conn)
	}
}
