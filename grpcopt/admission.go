package grpcopt

import (
	"fmt"

	"github.com/hubio/hubio/poller"
	"github.com/hubio/hubio/transport"
)

// This file is Config.Admission: which conns the listeners of Listen take.
//
// Listen (and Listen with a Group) applies the Admission in Accept, before
// grpc-go sees a conn: a refused conn never costs a goroutine, a handshake
// or an HTTP/2 transport, and a paused listener leaves conns in the kernel
// backlog. A conn accepted by Listen and then moved by ServerOption onto
// another hub keeps its slot (transport.NewConnHub moves it with the
// socket), so it is counted until grpc-go closes it.
//
// ServerOption alone (grpc-go's Serve on a package net listener) applies
// no admission: grpc-go has accepted the conn and started its goroutine by
// the time the credentials see it, so there is no backlog to pause and
// nothing left to save by refusing it there that the listener could not
// save earlier. Use Listen, or transport.Listener.SetAdmission on a
// listener of your own, to admit conns.

// admit applies the Config's Admission, if any, to l: the Admission's
// decisions, its metrics (when the Config records any: see Config.Metrics),
// and a warning logged once per reason per listener the first time a conn
// is refused or the listener pauses for it. It returns what the listener's
// Close calls to remove that warning's hook from the Admission, which may
// outlive the listener.
func (c Config) admit(l *transport.Listener) (unhook func()) {
	a := c.Admission
	if a == nil {
		return func() {}
	}
	addr := l.Addr()
	unhook = a.OnFirstRemovable(func(r transport.Reason) {
		logger.Warningf("grpcopt: listener %v %s (%s); later ones are counted in Admission.Stats and the hubio.listener.* metrics, not logged",
			addr, admissionVerb(a.Policy(), r), admissionWhy(a.Policy(), r))
	})
	l.SetAdmission(a)
	if t := c.telemetry(); t != nil {
		t.InstrumentAdmission(a) // metrics never fail a listener
	}
	return unhook
}

// watchGroup makes the Admission's shedding watch every hub of the Group
// besides own (the listener's, watched by SetAdmission): accepted conns go
// to all of them. It returns the function that stops the probes.
func (c Config) watchGroup(own *poller.Hub) func() {
	if c.Admission == nil || c.Group == nil {
		return func() {}
	}
	var stops []func()
	for _, h := range c.Group.Hubs() {
		if h != own {
			stops = append(stops, c.Admission.Watch(h))
		}
	}
	return func() {
		for _, stop := range stops {
			stop()
		}
	}
}

// admissionVerb says what happened for reason r.
func admissionVerb(p transport.AdmissionPolicy, r transport.Reason) string {
	if r == transport.ReasonLoopDelay || (r == transport.ReasonRate && !p.RefuseOverRate) {
		return "paused accepting, leaving conns in the backlog,"
	}
	return "refused a conn (reset)"
}

// admissionWhy names the setting behind reason r.
func admissionWhy(p transport.AdmissionPolicy, r transport.Reason) string {
	switch r {
	case transport.ReasonConns:
		return fmt.Sprintf("MaxConns %d reached", p.MaxConns)
	case transport.ReasonPeer:
		return fmt.Sprintf("MaxConnsPerPeer %d reached for one /%d IPv4 or /%d IPv6 peer", p.MaxConnsPerPeer, p.PeerBitsIPv4, p.PeerBitsIPv6)
	case transport.ReasonRate:
		return fmt.Sprintf("Rate %g/s, Burst %d", p.Rate, max(p.Burst, 1))
	case transport.ReasonLoopDelay:
		return fmt.Sprintf("the hub's loop delay reached MaxLoopDelay %v; it resumes below %v", p.MaxLoopDelay, p.ResumeLoopDelay)
	}
	return r.String()
}
