package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"runtime"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/hubio/hubio/grpcopt"
	"github.com/hubio/hubio/poller"
)

// transportHubPaired is the hub transport with one group of GOMAXPROCS
// hubs for both sides of one process, each conn's two ends on the same
// hub: the client's dial takes the group's next hub, and the server moves
// the conn it accepts onto the hub its peer's end is on. Each hub then
// carries both halves of its conns' RPCs ("groups sized to GOMAXPROCS that
// keep each hub's conns together", issue 21), where hubN gives each side
// a group of its own. Set-up both only: the pairing needs both ends in one
// process.
const transportHubPaired = "hub-paired"

// pairing records the hub each dialed conn is on, by its local port, for
// the server's handshake to find by the peer's port: one buffered channel
// per port, made by whichever side comes first (the server may accept
// before the dialer returns).
type pairing struct {
	mu    sync.Mutex
	ports map[int]chan *poller.Hub
}

func newPairing() *pairing { return &pairing{ports: map[int]chan *poller.Hub{}} }

// slot returns port's channel, making it if neither side has yet.
func (p *pairing) slot(port int) chan *poller.Hub {
	p.mu.Lock()
	defer p.mu.Unlock()
	ch, ok := p.ports[port]
	if !ok {
		ch = make(chan *poller.Hub, 1)
		p.ports[port] = ch
	}
	return ch
}

func (p *pairing) put(port int, h *poller.Hub) { p.slot(port) <- h }

// take returns the hub of the conn dialed from port, or nil if its dial
// has not recorded one within 10s.
func (p *pairing) take(port int) *poller.Hub {
	select {
	case h := <-p.slot(port):
		p.mu.Lock()
		delete(p.ports, port)
		p.mu.Unlock()
		return h
	case <-time.After(10 * time.Second):
		return nil
	}
}

// tcpPort is a TCP address's port, 0 for another address.
func tcpPort(a net.Addr) int {
	if t, ok := a.(*net.TCPAddr); ok {
		return t.Port
	}
	return 0
}

// newPairedEndpoints fills e for transport hub-paired.
func newPairedEndpoints(e *endpoints, on sides) error {
	if on != sideServer|sideClient {
		return errors.New("hub-paired needs both sides in one process (-setup both)")
	}
	g, err := poller.NewGroup(runtime.GOMAXPROCS(0), poller.WithBalance(poller.RoundRobin))
	if err != nil {
		return err
	}
	e.hubs = g.Hubs()
	e.close = func() { g.Close() }
	p := newPairing()
	if e.lis, err = net.Listen("tcp", "127.0.0.1:0"); err != nil {
		g.Close()
		return err
	}
	e.serverOpts = append(e.serverOpts, grpc.Creds(pairedCreds{p: p, TransportCredentials: insecure.NewCredentials()}))
	e.dialOpts = append(e.dialOpts, grpc.WithContextDialer(pairedDial(g, p)))
	return nil
}

// pairedDial dials on g's next hub and records the hub for the server's
// end of the conn.
func pairedDial(g *poller.Group, p *pairing) func(context.Context, string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		h := g.Next()
		c, err := grpcopt.Config{Hub: h}.Dial(ctx, addr)
		if err == nil {
			p.put(tcpPort(c.LocalAddr()), h)
		}
		return c, err
	}
}

// pairedCreds moves each accepted conn onto its peer's hub, with
// grpcopt's credentials for that hub (no security, as the other
// transports run).
type pairedCreds struct {
	p *pairing
	credentials.TransportCredentials
}

func (c pairedCreds) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	h := c.p.take(tcpPort(raw.RemoteAddr()))
	if h == nil {
		raw.Close()
		return nil, nil, fmt.Errorf("hub-paired: no dial recorded for peer %v", raw.RemoteAddr())
	}
	return grpcopt.Config{Hub: h}.Credentials(c.TransportCredentials).ServerHandshake(raw)
}

func (c pairedCreds) Clone() credentials.TransportCredentials {
	return pairedCreds{p: c.p, TransportCredentials: c.TransportCredentials.Clone()}
}
