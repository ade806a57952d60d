package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// ParseAux parses repeated --aux-address NAME=IP values into the map NewSubnet
// takes. Addresses are validated later, against their subnet.
func ParseAux(values []string) (map[string]string, error) {
	out := make(map[string]string, len(values))
	for _, v := range values {
		name, ip, ok := strings.Cut(v, "=")
		name, ip = strings.TrimSpace(name), strings.TrimSpace(ip)
		if !ok || name == "" || ip == "" {
			return nil, errorf(ErrInvalid, "invalid aux-address %q: want NAME=IP, e.g. router=10.1.0.5", v)
		}
		if prev, dup := out[name]; dup {
			return nil, errorf(ErrInvalid, "aux-address name %q is given twice (%q and %q)", name, prev, ip)
		}
		out[name] = ip
	}
	return out, nil
}

// FromFlags turns Docker's repeatable network-create flags into one Subnet per
// --subnet, the way the docker CLI pairs them: each --ip-range, --gateway and
// --aux-address goes to the subnet that contains it; a subnet takes at most one
// ip-range and one gateway; subnets must not overlap. With no --subnet at all
// it returns nil (the caller picks one with PickSubnet) unless other flags were
// given, which then have nothing to attach to.
func FromFlags(subnets, ipRanges, gateways, auxAddrs []string) ([]Subnet, error) {
	aux, err := ParseAux(auxAddrs)
	if err != nil {
		return nil, err
	}
	if len(subnets) == 0 {
		switch {
		case len(ipRanges) > 0:
			return nil, errorf(ErrInvalid, "--ip-range %q needs a --subnet that contains it", ipRanges[0])
		case len(gateways) > 0:
			return nil, errorf(ErrInvalid, "--gateway %q needs a --subnet that contains it", gateways[0])
		case len(aux) > 0:
			return nil, errorf(ErrInvalid, "--aux-address needs a --subnet that contains it")
		}
		return nil, nil
	}

	type plan struct {
		prefix      netip.Prefix
		ipRange, gw string
		aux         map[string]string
	}
	plans := make([]*plan, 0, len(subnets))
	for _, s := range subnets {
		p, err := parsePrefix("subnet", s)
		if err != nil {
			return nil, err
		}
		for _, q := range plans {
			if q.prefix.Overlaps(p) {
				return nil, errorf(ErrInvalid, "subnets %s and %s overlap; one network's subnets must be disjoint", q.prefix, p)
			}
		}
		plans = append(plans, &plan{prefix: p})
	}
	owner := func(a netip.Addr) *plan {
		for _, q := range plans {
			if q.prefix.Contains(a) {
				return q
			}
		}
		return nil
	}
	list := func() string {
		s := make([]string, len(plans))
		for i, q := range plans {
			s[i] = q.prefix.String()
		}
		return strings.Join(s, ", ")
	}

	for _, v := range ipRanges {
		r, err := parsePrefix("ip-range", v)
		if err != nil {
			return nil, err
		}
		q := owner(r.Addr())
		if q == nil {
			return nil, errorf(ErrInvalid, "ip-range %s is in none of the subnets (%s)", r, list())
		}
		if q.ipRange != "" {
			return nil, errorf(ErrInvalid, "ip-ranges %s and %s are both in subnet %s; give at most one per subnet", q.ipRange, r, q.prefix)
		}
		q.ipRange = r.String()
	}
	for _, v := range gateways {
		g, err := parseAddr("gateway", v)
		if err != nil {
			return nil, err
		}
		q := owner(g)
		if q == nil {
			return nil, errorf(ErrInvalid, "gateway %s is in none of the subnets (%s)", g, list())
		}
		if q.gw != "" {
			return nil, errorf(ErrInvalid, "gateways %s and %s are both in subnet %s; give at most one per subnet", q.gw, g, q.prefix)
		}
		q.gw = g.String()
	}
	for _, name := range slices.Sorted(maps.Keys(aux)) {
		a, err := parseAddr(fmt.Sprintf("aux address %q", name), aux[name])
		if err != nil {
			return nil, err
		}
		q := owner(a)
		if q == nil {
			return nil, errorf(ErrInvalid, "aux address %q %s is in none of the subnets (%s)", name, a, list())
		}
		if q.aux == nil {
			q.aux = map[string]string{}
		}
		q.aux[name] = a.String()
	}

	out := make([]Subnet, 0, len(plans))
	for _, q := range plans {
		s, err := NewSubnet(q.prefix.String(), q.gw, q.ipRange, q.aux)
		if err != nil {
			return nil, err
		}
		out = append(out, s)
	}
	return out, nil
}

// CheckDisjoint reports the first pair of subnets of one network that overlap.
func CheckDisjoint(subnets []Subnet) error {
	for i, a := range subnets {
		for _, b := range subnets[i+1:] {
			if Overlaps(a.Prefix, b.Prefix) {
				return errorf(ErrInvalid, "subnets %s and %s overlap; one network's subnets must be disjoint", a.Prefix, b.Prefix)
			}
		}
	}
	return nil
}
