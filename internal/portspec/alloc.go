package portspec

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"
)

// ErrNoFreePort is wrapped by PickEphemeral and Allocate when a range is exhausted.
var ErrNoFreePort = errors.New("no free port")

// PickEphemeral returns the lowest port of lo..hi for which inUse is false.
// The caller reads lo and hi from /proc/sys/net/ipv4/ip_local_port_range (as
// Docker does) and closes inUse over the protocol and address it asks for.
func PickEphemeral(inUse func(port uint16) bool, lo, hi uint16) (uint16, error) {
	if lo == 0 || lo > hi {
		return 0, fmt.Errorf("port range %d-%d is invalid", lo, hi)
	}
	for p := int(lo); p <= int(hi); p++ {
		if !inUse(uint16(p)) {
			return uint16(p), nil
		}
	}
	return 0, fmt.Errorf("%w in %d-%d", ErrNoFreePort, lo, hi)
}

// Allocate returns ms with every open host port chosen: from HostPort..HostPortEnd
// when a range was given, from lo..hi (the ephemeral range) otherwise. A chosen
// port overlaps neither a fixed port of ms nor one chosen before it, and
// inUse (the caller's view of other containers and host listeners, called
// with the candidate mapping) is false for it. Fixed ports are not passed to
// inUse: checking them is the caller's conflict check.
//
// Allocate before ExpandFamilies, so that both families of an all-addresses
// mapping get the same port, as in Docker.
func Allocate(ms []Mapping, lo, hi uint16, inUse func(Mapping) bool) ([]Mapping, error) {
	type key struct {
		proto string
		port  uint16
	}
	taken := make(map[key][]netip.Addr)
	for _, m := range ms {
		if !m.Open() {
			k := key{m.Proto, m.HostPort}
			taken[k] = append(taken[k], m.HostIP)
		}
	}
	out := slices.Clone(ms)
	for i, m := range out {
		if !m.Open() {
			continue
		}
		from, to := lo, hi
		if m.HostPortEnd != 0 {
			from, to = m.HostPort, m.HostPortEnd
		}
		p, err := PickEphemeral(func(p uint16) bool {
			for _, ip := range taken[key{m.Proto, p}] {
				if overlap(ip, m.HostIP) {
					return true
				}
			}
			c := m
			c.HostPort, c.HostPortEnd = p, 0
			return inUse(c)
		}, from, to)
		if err != nil {
			return nil, fmt.Errorf("publish %s: host port: %w", m, err)
		}
		out[i].HostPort, out[i].HostPortEnd = p, 0
		taken[key{m.Proto, p}] = append(taken[key{m.Proto, p}], m.HostIP)
	}
	return out, nil
}

// ExpandFamilies replaces each all-addresses mapping by one on 0.0.0.0 and,
// when ipv6 is true, one on ::, which is what Docker installs and what
// `docker port` and `docker ps` show. Whether the network has IPv6 is known
// only to the caller, hence the flag.
func ExpandFamilies(ms []Mapping, ipv6 bool) []Mapping {
	out := make([]Mapping, 0, len(ms))
	for _, m := range ms {
		if m.HostIP.IsValid() {
			out = append(out, m)
			continue
		}
		m.HostIP = netip.IPv4Unspecified()
		out = append(out, m)
		if ipv6 {
			m.HostIP = netip.IPv6Unspecified()
			out = append(out, m)
		}
	}
	return out
}
