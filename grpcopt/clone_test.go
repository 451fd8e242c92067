package grpcopt_test

import (
	"net"
	"testing"

	"github.com/hubio/hubio/grpcopt"
)

// TestClonedCredentialsServeOffHubConns: credentials from Clone (as a
// wrapper combining credentials makes) serve a conn that stays off the hub
// as the original does, rather than panicking.
func TestClonedCredentialsServeOffHubConns(t *testing.T) {
	checkNoLeaks(t)
	h := newHub(t)
	lis := stdListen(t)
	c, err := net.Dial("tcp", lis.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s, err := lis.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	creds := grpcopt.Config{Hub: h}.Credentials(nil).Clone()
	conn, _, err := creds.ServerHandshake(&limitedWriter{s})
	if err != nil {
		t.Fatalf("ServerHandshake: %v", err)
	}
	if _, ok := conn.(*limitedWriter); !ok {
		t.Fatalf("ServerHandshake returned a %T, want the off-hub wrapper itself", conn)
	}
}
