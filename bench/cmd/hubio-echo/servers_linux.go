package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"time"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
	"github.com/panjf2000/gnet/v2"
	"log"
)

// Server names, as given to -servers. Every one of them is measured with the
// same client code (pingPong); they differ in the server and, for the hubboth
// and hubone cases, in how the clients dial.
const (
	srvStd     = "std"     // package net: a goroutine per conn, Read then Write
	srvHub     = "hub"     // transport.Listen on a hub: the same goroutine per conn; clients on package net
	srvHubBoth = "hubboth" // as hub, and the clients dial through a hub of their own (a hub per side)
	srvHubOne  = "hubone"  // as hubboth, with one hub for both sides
	srvGnet    = "gnet"    // gnet v2, multicore: GOMAXPROCS event loops echo in OnTraffic
	srvGnet1   = "gnet1"   // gnet v2, one event loop
)

// knownServers lists the servers in their default order.
var knownServers = []string{srvStd, srvHub, srvHubBoth, srvHubOne, srvGnet, srvGnet1}

// echoBufSize is the read buffer of the goroutine-per-conn servers: the
// same for package net and the hub, and as large as grpc-go's read buffer.
const echoBufSize = 32 << 10

// server is a running echo server and the way its clients dial it.
type server struct {
	addr string
	// dial opens one client conn: package net's dialer, or a hub's.
	dial func() (net.Conn, error)
	// close stops the server; the caller closes the client conns first, and
	// close returns once every goroutine the server started has ended.
	close func() error
}

// startServer starts the named server on a loopback port.
func startServer(name string) (*server, error) {
	switch name {
	case srvStd:
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		return goroutinePerConn(l, netDial(l.Addr().String()), nil), nil
	case srvHub, srvHubBoth, srvHubOne:
		sh, err := poller.New()
		if err != nil {
			return nil, err
		}
		l, err := transport.Listen(sh, "tcp", "127.0.0.1:0")
		if err != nil {
			sh.Close()
			return nil, err
		}
		addr := l.Addr().String()
		hubs := []*poller.Hub{sh}
		dial := netDial(addr)
		switch name {
		case srvHubBoth:
			ch, err := poller.New()
			if err != nil {
				l.Close()
				sh.Close()
				return nil, err
			}
			hubs = append(hubs, ch)
			dial = hubDial(ch, addr)
		case srvHubOne:
			dial = hubDial(sh, addr)
		}
		return goroutinePerConn(l, dial, hubs), nil
	case srvGnet, srvGnet1:
		return startGnet(name == srvGnet)
	}
	return nil, fmt.Errorf("unknown server %q (known: %v)", name, knownServers)
}

// netDial dials addr with package net.
func netDial(addr string) func() (net.Conn, error) {
	return func() (net.Conn, error) { return net.Dial("tcp", addr) }
}

// hubDial dials addr through hub h.
func hubDial(h *poller.Hub, addr string) func() (net.Conn, error) {
	d := &transport.Dialer{Hub: h}
	return func() (net.Conn, error) { return d.Dial("tcp", addr) }
}

// goroutinePerConn serves l with a goroutine per accepted conn that reads
// and writes back what it read, until the client closes its end. The code
// is the same for package net's listener and the hub's. The hubs, if any,
// are closed after the listener and every conn goroutine have ended.
func goroutinePerConn(l net.Listener, dial func() (net.Conn, error), hubs []*poller.Hub) *server {
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				echo(c)
			}()
		}
	}()
	return &server{
		addr: l.Addr().String(),
		dial: dial,
		close: func() error {
			err := l.Close()
			wg.Wait()
			for _, h := range hubs {
				err = errors.Join(err, h.Close())
			}
			return err
		},
	}
}

// echo writes back whatever it reads from c until a read fails (EOF when
// the client closes its end).
func echo(c net.Conn) {
	buf := make([]byte, echoBufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// gnetEcho is gnet's event handler: OnTraffic writes back what it reads, on
// the event loop that owns the conn (gnet's own echo example).
type gnetEcho struct {
	gnet.BuiltinEventEngine
	booted chan gnet.Engine
}

// OnBoot hands the engine to startGnet.
func (e *gnetEcho) OnBoot(eng gnet.Engine) gnet.Action {
	e.booted <- eng
	return gnet.None
}

// OnTraffic echoes everything buffered for c.
func (e *gnetEcho) OnTraffic(c gnet.Conn) gnet.Action {
	buf, _ := c.Next(-1)
	if _, err := c.Write(buf); err != nil {
		return gnet.Close
	}
	return gnet.None
}

// quietLogger is gnet's logger here: errors go to the standard logger
// (stderr), the rest nowhere, so that gnet's start-up line does not mix
// with the child's result on stdout.
type quietLogger struct{}

func (quietLogger) Debugf(string, ...any)     {}
func (quietLogger) Infof(string, ...any)      {}
func (quietLogger) Warnf(string, ...any)      {}
func (quietLogger) Errorf(f string, a ...any) { log.Printf("gnet: "+f, a...) }
func (quietLogger) Fatalf(f string, a ...any) { log.Fatalf("gnet: "+f, a...) }

// startGnet runs a gnet engine on a loopback port: multicore with
// GOMAXPROCS event loops, or one event loop. TCP_NODELAY is on, as
// package net and hubio set it; the loops are not locked to threads
// (gnet's default).
func startGnet(multicore bool) (*server, error) {
	h := &gnetEcho{booted: make(chan gnet.Engine, 1)}
	opts := []gnet.Option{
		gnet.WithMulticore(multicore),
		gnet.WithTCPNoDelay(gnet.TCPNoDelay),
		gnet.WithLogger(quietLogger{}),
	}
	if multicore {
		opts = append(opts, gnet.WithNumEventLoop(runtime.GOMAXPROCS(0)))
	}
	done := make(chan error, 1)
	go func() { done <- gnet.Run(h, "tcp://127.0.0.1:0", opts...) }()
	var eng gnet.Engine
	select {
	case eng = <-h.booted:
	case err := <-done:
		return nil, fmt.Errorf("gnet: %v", err)
	}
	addr, err := gnetAddr(eng)
	if err != nil {
		eng.Stop(context.Background())
		<-done
		return nil, err
	}
	return &server{
		addr: addr,
		dial: netDial(addr),
		close: func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := eng.Stop(ctx)
			return errors.Join(err, <-done)
		},
	}, nil
}

// gnetAddr returns the address gnet's listener is bound to (gnet does not
// report the port it was given for port 0).
func gnetAddr(eng gnet.Engine) (string, error) {
	fd, err := eng.Dup()
	if err != nil {
		return "", fmt.Errorf("gnet: dup listener: %v", err)
	}
	defer syscall.Close(fd)
	sa, err := syscall.Getsockname(fd)
	if err != nil {
		return "", err
	}
	in, ok := sa.(*syscall.SockaddrInet4)
	if !ok {
		return "", fmt.Errorf("gnet: listener address %T", sa)
	}
	return fmt.Sprintf("127.0.0.1:%d", in.Port), nil
}

// errMismatch reports an echo that is not the message sent.
var errMismatch = errors.New("echo differs from the message sent")

// readFull is io.ReadFull, named here so that the client's path reads as
// one call per round trip in profiles.
func readFull(c net.Conn, b []byte) error {
	_, err := io.ReadFull(c, b)
	return err
}
