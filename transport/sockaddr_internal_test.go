//go:build linux

package transport

import (
	"net"
	"strconv"
	"syscall"
	"testing"

	"github.com/hubio/hubio/poller"
)

// TestIPv6ZonesConvertAsPackageNet: a zone is an interface name or, as
// package net falls back to, its index in decimal; the reverse conversion
// keeps the zone, by name where the interface exists.
func TestIPv6ZonesConvertAsPackageNet(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface named lo: %v", err)
	}
	unused := 1 << 20 // an index no interface has
	if _, err := net.InterfaceByIndex(unused); err == nil {
		t.Skipf("interface index %d exists", unused)
	}
	for _, tc := range []struct {
		zone string
		want uint32
	}{
		{"", 0},
		{"lo", uint32(lo.Index)},
		{strconv.Itoa(lo.Index), uint32(lo.Index)},
		{"2", 2},
		{strconv.Itoa(unused), uint32(unused)},
		{"no-such-interface", 0},
	} {
		a := &net.TCPAddr{IP: net.ParseIP("fe80::1"), Port: 80, Zone: tc.zone}
		fam, sa, err := toSockaddr("tcp", a)
		if err != nil || fam != syscall.AF_INET6 {
			t.Errorf("toSockaddr(%v) = %d, %v, %v", a, fam, sa, err)
			continue
		}
		if got := sa.(*syscall.SockaddrInet6).ZoneId; got != tc.want {
			t.Errorf("toSockaddr(%v): ZoneId = %d, want %d", a, got, tc.want)
		}
	}
	for _, tc := range []struct {
		index int
		want  string
	}{
		{0, ""},
		{lo.Index, "lo"},
		{unused, strconv.Itoa(unused)},
	} {
		sa := &syscall.SockaddrInet6{Addr: [16]byte{0: 0xfe, 1: 0x80, 15: 1}, Port: 80, ZoneId: uint32(tc.index)}
		a, ok := fromSockaddr(sa, false).(*net.TCPAddr)
		if !ok || a.Zone != tc.want || a.Port != 80 || !a.IP.Equal(net.ParseIP("fe80::1")) {
			t.Errorf("fromSockaddr(zone index %d) = %v, want [fe80::1%%%s]:80", tc.index, a, tc.want)
		}
	}
}

// TestDialIPv6LoopbackWithZone dials ::1 with the loopback zone by name and
// by number, and compares the conn's addresses with package net's.
func TestDialIPv6LoopbackWithZone(t *testing.T) {
	lo, err := net.InterfaceByName("lo")
	if err != nil {
		t.Skipf("no loopback interface named lo: %v", err)
	}
	ln, err := net.Listen("tcp", "[::1]:0")
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	h, err := poller.New()
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
	for _, zone := range []string{"lo", strconv.Itoa(lo.Index)} {
		addr := net.JoinHostPort("::1%"+zone, port)
		std, err := net.Dial("tcp", addr)
		if err != nil {
			t.Skipf("package net cannot dial %s here: %v", addr, err)
		}
		defer std.Close()
		c, err := (&Dialer{Hub: h}).Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %s: %v", addr, err)
		}
		defer c.Close()
		if got, want := c.RemoteAddr().String(), std.RemoteAddr().String(); got != want {
			t.Errorf("dial %s: RemoteAddr %s, package net's %s", addr, got, want)
		}
		for range 2 {
			a, err := ln.Accept()
			if err != nil {
				t.Fatal(err)
			}
			a.Close()
		}
	}
}
