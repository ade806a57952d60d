package bridge

import (
	"crypto/sha256"
	"fmt"
	"net/netip"
	"strconv"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
)

// IPv6 clients of an IPv4-only network's published ports, as Docker serves
// them on [::]: nft cannot DNAT IPv6 to IPv4, so the network has a private
// /64 (a ULA of fd00::/8, chosen at creation and recorded in its options)
// whose first address is on the bridge, and a container publishing ports
// takes the address of that /64 that ends in its IPv4 address, on its inner
// end only. The firewall DNATs IPv6 to it and masquerades to the gateway's
// address (dnat6_bridges); no route, no other IPv6 leaves the bridge. The
// container's service must listen on IPv6 too (:: or the address).

// OptPublishedIPv6 records (or names) an IPv4-only network's private /64.
const OptPublishedIPv6 = "ctnet.bridge.published_ipv6_subnet"

// derivePublishedIPv6 is the /64 a network gets unless the option names one:
// fd and 56 bits of a hash of its id (try counts past collisions).
func derivePublishedIPv6(id string, try int) netip.Prefix {
	h := sha256.Sum256([]byte("ctnet published ipv6 " + id + "/" + strconv.Itoa(try)))
	var a [16]byte
	a[0] = 0xfd
	copy(a[1:8], h[:7])
	return netip.PrefixFrom(netip.AddrFrom16(a), 64)
}

// publishedIPv6 is the network's private /64, invalid on networks with IPv6.
// A network made before ctnet recorded one gets the one derived from its id.
func publishedIPv6(n driver.Network) netip.Prefix {
	if n.IPv6 {
		return netip.Prefix{}
	}
	if p, err := netip.ParsePrefix(n.Options[OptPublishedIPv6]); err == nil {
		return p
	}
	return derivePublishedIPv6(n.ID, 0)
}

// publishedIPv6Gateway is the bridge's address in p.
func publishedIPv6Gateway(p netip.Prefix) netip.Addr { return p.Addr().Next() }

// endpointIPv6 is the endpoint's address in its network's private /64 (with
// the /64's length): on an IPv4-only network, for an endpoint that publishes
// ports on IPv6 host addresses other than [::1] when it joins.
func endpointIPv6(n driver.Network, ep driver.Endpoint) netip.Prefix {
	p := publishedIPv6(n)
	if !p.IsValid() || !publishesIPv6(ep) {
		return netip.Prefix{}
	}
	for _, a := range ep.Addrs {
		if a.Addr().Is4() {
			b := p.Addr().As16()
			v4 := a.Addr().As4()
			copy(b[12:], v4[:])
			return netip.PrefixFrom(netip.AddrFrom16(b), p.Bits())
		}
	}
	return netip.Prefix{}
}

func publishesIPv6(ep driver.Endpoint) bool {
	for _, m := range ep.Ports {
		if m.HostIP.Is6() && !m.HostIP.IsLoopback() {
			return true
		}
	}
	return false
}

// planPublishedIPv6 checks or chooses the private /64 of an IPv4-only
// network: a /64 of fd00::/8 that overlaps no other network's subnets or /64.
func planPublishedIPv6(n *driver.Network, others []driver.Network) error {
	v, given := n.Options[OptPublishedIPv6]
	if n.IPv6 {
		if given {
			return errdefs.Field(optionField(OptPublishedIPv6), fmt.Sprintf("option %s: the network has IPv6 of its own; its containers' IPv6 addresses serve published ports", OptPublishedIPv6))
		}
		return nil
	}
	taken := func(p netip.Prefix) string {
		for _, o := range others {
			for _, s := range o.Subnets {
				if s.Prefix.Overlaps(p) {
					return fmt.Sprintf("subnet %s of network %q", s.Prefix, o.Name)
				}
			}
			if op := publishedIPv6(o); op.IsValid() && op.Overlaps(p) {
				return fmt.Sprintf("the published IPv6 subnet of network %q", o.Name)
			}
		}
		return ""
	}
	if given {
		p, err := netip.ParsePrefix(v)
		if err != nil || !p.Addr().Is6() || p.Addr().Is4In6() || p.Bits() != 64 || p != p.Masked() || p.Addr().Zone() != "" {
			return errdefs.Field(optionField(OptPublishedIPv6), fmt.Sprintf("option %s=%q: want an IPv6 /64 such as fd12:3456:789a:1::/64", OptPublishedIPv6, v))
		}
		if !netip.MustParsePrefix("fc00::/7").Contains(p.Addr()) {
			return errdefs.Field(optionField(OptPublishedIPv6), fmt.Sprintf("option %s=%q: want a private (unique local, fd00::/8) /64: its addresses exist only behind the host", OptPublishedIPv6, v))
		}
		if what := taken(p); what != "" {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: optionField(OptPublishedIPv6), Msg: fmt.Sprintf("option %s=%s overlaps %s; pick another", OptPublishedIPv6, v, what)}
		}
		return nil
	}
	for try := 0; try < 16; try++ {
		if p := derivePublishedIPv6(n.ID, try); taken(p) == "" {
			n.Options[OptPublishedIPv6] = p.String()
			return nil
		}
	}
	return fmt.Errorf("network %q: no free private IPv6 /64 for its published ports; name one with %s", n.Name, OptPublishedIPv6)
}
