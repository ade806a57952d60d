package network

import (
	"errors"
	"fmt"
	"net/netip"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/portspec"
)

// Published host ports are DNAT elements: nothing in the host's socket
// table says they are taken, so a host service could bind one later and
// silently lose its clients to the container. HoldPorts binds a socket
// (never listening, so it receives nothing) on each, which makes a later
// bind by anyone else fail with EADDRINUSE, as docker-proxy's sockets do
// for Docker. A container's monitor holds them while the container runs;
// SCTP ports are not held (and are reported by reconcile like the rest).
func HoldPorts(ms []portspec.Mapping) (release func(), err error) {
	var fds []int
	release = func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}
	for _, m := range ms {
		fd, err := holdPort(m)
		if err != nil {
			release()
			return func() {}, fmt.Errorf("hold host port %s: %w", m, err)
		}
		if fd >= 0 {
			fds = append(fds, fd)
		}
	}
	return release, nil
}

func holdPort(m portspec.Mapping) (int, error) {
	typ := unix.SOCK_STREAM
	switch m.Proto {
	case "udp":
		typ = unix.SOCK_DGRAM
	case "tcp":
	default:
		return -1, nil
	}
	ip := m.HostIP
	if !ip.IsValid() {
		ip = netip.IPv4Unspecified()
	}
	fam := unix.AF_INET
	if ip.Is6() {
		fam = unix.AF_INET6
	}
	fd, err := unix.Socket(fam, typ|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	var sa unix.Sockaddr
	if ip.Is4() {
		sa = &unix.SockaddrInet4{Port: int(m.HostPort), Addr: ip.As4()}
	} else {
		// [::] stands for IPv6 only: the IPv4 side is a mapping of its own.
		if err := unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 1); err != nil {
			unix.Close(fd)
			return -1, err
		}
		sa = &unix.SockaddrInet6{Port: int(m.HostPort), Addr: ip.As16()}
	}
	if err := unix.Bind(fd, sa); err != nil && !errors.Is(err, unix.EADDRNOTAVAIL) {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}
