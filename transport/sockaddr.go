//go:build unix || windows

package transport

import (
	"net"
	"strconv"
	"syscall"
)

// toSockaddr converts a *net.TCPAddr or *net.UnixAddr for a socket of
// network: "tcp6" always uses AF_INET6 (an IPv4 address becomes
// v4-mapped); "tcp" and "tcp4" use AF_INET for IPv4 and unspecified
// addresses, as package net does.
func toSockaddr(network string, a net.Addr) (int, syscall.Sockaddr, error) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ip4 := a.IP.To4()
		if network != "tcp6" && (a.IP == nil || ip4 != nil) {
			sa := &syscall.SockaddrInet4{Port: a.Port}
			copy(sa.Addr[:], ip4)
			return syscall.AF_INET, sa, nil
		}
		if network == "tcp4" {
			return 0, nil, &net.AddrError{Err: "non-IPv4 address", Addr: a.String()}
		}
		sa := &syscall.SockaddrInet6{Port: a.Port}
		if a.IP != nil {
			copy(sa.Addr[:], a.IP.To16())
		}
		sa.ZoneId = uint32(zoneIndex(a.Zone))
		return syscall.AF_INET6, sa, nil
	case *net.UnixAddr:
		return syscall.AF_UNIX, &syscall.SockaddrUnix{Name: a.Name}, nil
	}
	return 0, nil, &net.AddrError{Err: "unexpected address type", Addr: a.String()}
}

// zoneIndex turns an IPv6 zone into an interface index as package net's
// zoneCache.index does: an interface name, else the zone's leading decimal
// digits (dtoi: capped at 0xFFFFFF), else 0.
func zoneIndex(zone string) int {
	if zone == "" {
		return 0
	}
	if ifi, err := net.InterfaceByName(zone); err == nil {
		return ifi.Index
	}
	const big = 0xFFFFFF
	n := 0
	for i := 0; i < len(zone) && '0' <= zone[i] && zone[i] <= '9'; i++ {
		if n = n*10 + int(zone[i]-'0'); n >= big {
			return big
		}
	}
	return n
}

// zoneName is the reverse of zoneIndex, as package net's zoneCache.name:
// the interface's name, else the index in decimal; 0 is no zone.
func zoneName(index int) string {
	if index == 0 {
		return ""
	}
	if ifi, err := net.InterfaceByIndex(index); err == nil {
		return ifi.Name
	}
	return strconv.Itoa(index)
}

// fromSockaddr converts to the address types package net reports.
func fromSockaddr(sa syscall.Sockaddr, unix bool) net.Addr {
	switch sa := sa.(type) {
	case *syscall.SockaddrInet4:
		return &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
	case *syscall.SockaddrInet6:
		a := &net.TCPAddr{IP: append(net.IP(nil), sa.Addr[:]...), Port: sa.Port}
		a.Zone = zoneName(int(sa.ZoneId))
		return a
	case *syscall.SockaddrUnix:
		return &net.UnixAddr{Name: sa.Name, Net: "unix"}
	}
	if unix {
		return &net.UnixAddr{Net: "unix"}
	}
	return nil
}
