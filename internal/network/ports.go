package network

import (
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// The store keeps an index of the host ports in use, so that conflicts are
// found before anything changes: "<proto>/<host port>/<host ip>" -> the key
// of the attachment publishing it, under the host's part of the bucket.

func portKey(host string, m portspec.Mapping) string {
	return hostKey(host, fmt.Sprintf("%s/%d/%s", m.Proto, m.HostPort, m.HostIP))
}

// portOwner returns the attachment key holding a host port that overlaps m:
// same protocol and port, and the same address or a wildcard of the same
// family on either side (m without an address means every address of both).
// A TCP or UDP port on every IPv4 address answers on [::1] too, as Docker's
// proxy does, so it also overlaps [::1] and every IPv6 address. Ports of the
// attachment self are no conflict.
func portOwner(tx store.Tx, host string, m portspec.Mapping, self string) string {
	var owner string
	tx.ForEach(store.Ports, hostKey(host, fmt.Sprintf("%s/%d/", m.Proto, m.HostPort)), func(k string, v []byte) error {
		ip, err := netip.ParseAddr(k[strings.LastIndex(k, "/")+1:])
		if string(v) == self {
			return nil
		}
		if err != nil || !m.HostIP.IsValid() ||
			(ip.Is4() == m.HostIP.Is4() && (ip.IsUnspecified() || m.HostIP.IsUnspecified() || ip == m.HostIP)) ||
			(loopback.Supported(m.Proto) && (claimsLoopback6(ip) && claimsLoopback6(m.HostIP))) {
			owner = string(v)
		}
		return nil
	})
	return owner
}

// claimsLoopback6 tells whether a host address of a published TCP or UDP
// port makes it answer on [::1]: [::1] itself, and both wildcards.
func claimsLoopback6(ip netip.Addr) bool {
	return ip.IsUnspecified() || (ip.Is6() && ip.IsLoopback())
}

// hostListens reports whether a process on the host already holds the port:
// its traffic would be taken from it by the DNAT (or the [::1] redirection
// that comes with every IPv4 address), so Docker refuses too.
func (s *Service) hostListens(m portspec.Mapping) bool {
	if s.d.Kernel.Listening(m.Proto, m.HostIP, m.HostPort) {
		return true
	}
	return m.HostIP == netip.IPv4Unspecified() && loopback.Supported(m.Proto) &&
		s.d.Kernel.Listening(m.Proto, netip.IPv6Loopback(), m.HostPort)
}

// ephemeralRange is the kernel's local port range, where Docker picks host
// ports for `-p 80`.
func ephemeralRange() (uint16, uint16) {
	b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range")
	if f := strings.Fields(string(b)); err == nil && len(f) == 2 {
		lo, err1 := strconv.Atoi(f[0])
		hi, err2 := strconv.Atoi(f[1])
		if err1 == nil && err2 == nil && lo > 0 && hi <= 65535 && lo <= hi {
			return uint16(lo), uint16(hi)
		}
	}
	return 32768, 60999
}

// reservePorts chooses host ports for open mappings, checks every one
// against other attachments and host listeners, and records them for a.
// Ports on every address are published on 0.0.0.0 and ::, as Docker does;
// on a network without IPv6 the driver serves IPv6 clients through an
// address the container takes when it joins (joining: a is not joined yet),
// so an endpoint joined already publishes IPv4 only.
func (s *Service) reservePorts(tx store.Tx, n *Network, a *Attachment, ms []portspec.Mapping, joining bool) ([]portspec.Mapping, error) {
	if len(ms) == 0 {
		return nil, nil
	}
	for _, m := range ms {
		if m.HostIP.Is6() && !m.HostIP.IsLoopback() && !n.IPv6 && !joining {
			return nil, errdefs.Field("publish", fmt.Sprintf("port %s: the network has no IPv6 and the endpoint is joined already, so it has no IPv6 address to forward to; publish the port when connecting, use a network made with --ipv6, or an IPv4 host address", m))
		}
	}
	self := a.key()
	lo, hi := ephemeralRange()
	taken := func(m portspec.Mapping) bool { return portOwner(tx, a.Host, m, self) != "" || s.hostListens(m) }
	ms, err := portspec.Allocate(ms, lo, hi, taken)
	if err != nil {
		return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "publish", Msg: "publish: " + err.Error(), Err: err}
	}
	ms = portspec.ExpandFamilies(ms, n.IPv6 || joining)
	for _, m := range ms {
		if key := portOwner(tx, a.Host, m, self); key != "" {
			who := "another endpoint"
			if o, _ := store.GetJSON[Attachment](tx, store.Endpoints, key); o != nil {
				who = o.Describe()
			}
			return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "publish", Msg: fmt.Sprintf("port %s: host port %d/%s is already published by %s; pick another host port", m, m.HostPort, m.Proto, who)}
		}
		if s.hostListens(m) {
			return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "publish", Msg: fmt.Sprintf("port %s: a process on the host already listens on %d/%s; stop it or pick another host port", m, m.HostPort, m.Proto)}
		}
		if err := tx.Put(store.Ports, portKey(a.Host, m), []byte(self)); err != nil {
			return nil, err
		}
	}
	return ms, nil
}

// releasePorts frees a's host ports in the store.
func releasePorts(tx store.Tx, a *Attachment) error {
	for _, m := range a.Ports {
		if string(tx.Get(store.Ports, portKey(a.Host, m))) == a.key() {
			if err := tx.Delete(store.Ports, portKey(a.Host, m)); err != nil {
				return err
			}
		}
	}
	return nil
}
