package ipam

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
)

// Subnet is one network's address plan for one family.
type Subnet struct {
	Prefix  netip.Prefix          // canonical (masked)
	Gateway netip.Addr            // inside Prefix, never network/broadcast
	Range   netip.Prefix          // allocation pool inside Prefix; zero means the whole Prefix
	Aux     map[string]netip.Addr // reserved addresses by name (Docker's --aux-address)
}

// maxProbes bounds one Allocate scan: every address of an IPv4 /8, and the first
// 16 Mi addresses of anything larger (IPv6), so a callback that reports
// everything as used cannot make Allocate loop for ever.
const maxProbes = 1 << 24

// NewSubnet validates Docker-style --subnet, --gateway, --ip-range and
// --aux-address values and fills defaults. As Docker does, a subnet or ip-range
// with host bits set (10.1.2.3/16) is an error, not silently masked. The gateway
// defaults to the first address after the network address. Subnets too small for
// a gateway plus one container (IPv4 /31 and /32, IPv6 /127 and /128) are
// rejected. The gateway and aux addresses may lie outside the ip-range but not
// outside the subnet.
func NewSubnet(prefix, gateway, ipRange string, aux map[string]string) (Subnet, error) {
	p, err := parsePrefix("subnet", prefix)
	if err != nil {
		return Subnet{}, err
	}
	if limit := p.Addr().BitLen() - 2; p.Bits() > limit {
		return Subnet{}, errorf(ErrInvalid, "subnet %s is too small: it needs room for a gateway and at least one container (use /%d or larger)", p, limit)
	}
	for _, r := range unusable {
		if Overlaps(p, r.prefix) {
			return Subnet{}, errorf(ErrInvalid, "subnet %s overlaps %s (%s), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8", p, r.prefix, r.what)
		}
	}
	s := Subnet{Prefix: p}

	if gateway == "" {
		s.Gateway = p.Addr().Next()
	} else {
		gw, err := parseAddr("gateway", gateway)
		if err != nil {
			return Subnet{}, err
		}
		if err := s.checkPlace("gateway "+gw.String(), gw); err != nil {
			return Subnet{}, err
		}
		s.Gateway = gw
	}

	if ipRange != "" {
		r, err := parsePrefix("ip-range", ipRange)
		if err != nil {
			return Subnet{}, err
		}
		if r.Addr().Is4() != p.Addr().Is4() {
			return Subnet{}, errorf(ErrInvalid, "ip-range %s is %s but subnet %s is %s", r, family(r.Addr()), p, family(p.Addr()))
		}
		if r.Bits() < p.Bits() && r.Contains(p.Addr()) {
			return Subnet{}, errorf(ErrInvalid, "ip-range %s is larger than subnet %s", r, p)
		}
		if !p.Contains(r.Addr()) {
			return Subnet{}, errorf(ErrInvalid, "ip-range %s is outside subnet %s", r, p)
		}
		s.Range = r
	}

	if len(aux) > 0 {
		s.Aux = make(map[string]netip.Addr, len(aux))
		for _, name := range slices.Sorted(maps.Keys(aux)) {
			if name == "" {
				return Subnet{}, errorf(ErrInvalid, "aux address %q has an empty name", aux[name])
			}
			a, err := parseAddr(fmt.Sprintf("aux address %q", name), aux[name])
			if err != nil {
				return Subnet{}, err
			}
			what := fmt.Sprintf("aux address %q %s", name, a)
			if err := s.checkPlace(what, a); err != nil {
				return Subnet{}, err
			}
			if a == s.Gateway {
				return Subnet{}, errorf(ErrInvalid, "%s is the gateway of subnet %s", what, p)
			}
			s.Aux[name] = a
		}
	}

	if s.Range.IsValid() && !s.hasAllocatable() {
		return Subnet{}, errorf(ErrInvalid, "ip-range %s leaves no address for containers: the gateway and reserved addresses take all of it", s.Range)
	}
	return s, nil
}

// unusable are the special-purpose ranges (RFC 6890) no interface can hold
// a unicast address of, or that mean something else to every host.
var unusable = []struct {
	prefix netip.Prefix
	what   string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), `"this network"`},
	{netip.MustParsePrefix("127.0.0.0/8"), "loopback"},
	{netip.MustParsePrefix("169.254.0.0/16"), "link-local"},
	{netip.MustParsePrefix("224.0.0.0/4"), "multicast"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved, with the broadcast address 255.255.255.255"},
	{netip.MustParsePrefix("::/128"), "the unspecified address"},
	{netip.MustParsePrefix("::1/128"), "loopback"},
	{netip.MustParsePrefix("::ffff:0:0/96"), "IPv4-mapped"},
	{netip.MustParsePrefix("fe80::/10"), "link-local"},
	{netip.MustParsePrefix("ff00::/8"), "multicast"},
}

// checkPlace tells whether a (a gateway or aux address, named by what) lies in
// the subnet and is not its network, broadcast or subnet-router anycast address.
func (s Subnet) checkPlace(what string, a netip.Addr) error {
	if a.Is4() != s.Prefix.Addr().Is4() {
		return errorf(ErrInvalid, "%s is %s but subnet %s is %s", what, family(a), s.Prefix, family(s.Prefix.Addr()))
	}
	if !s.Prefix.Contains(a) {
		return errorf(ErrInvalid, "%s is outside subnet %s", what, s.Prefix)
	}
	if role := s.fixedRole(a); role != "" {
		return errorf(ErrInvalid, "%s is %s of subnet %s", what, role, s.Prefix)
	}
	return nil
}

// fixedRole names the addresses that are never a host's: the network address
// (on IPv6 the subnet-router anycast address, RFC 4291 2.6.1) and the IPv4
// broadcast address.
func (s Subnet) fixedRole(a netip.Addr) string {
	switch {
	case a == s.Prefix.Addr() && a.Is4():
		return "the network address"
	case a == s.Prefix.Addr():
		return "the subnet-router anycast address"
	case a.Is4() && a == lastAddr(s.Prefix):
		return "the broadcast address"
	}
	return ""
}

// role names why a is not allocatable, or returns "".
func (s Subnet) role(a netip.Addr) string {
	if r := s.fixedRole(a); r != "" {
		return r
	}
	if a == s.Gateway {
		return "the gateway"
	}
	for _, name := range slices.Sorted(maps.Keys(s.Aux)) {
		if s.Aux[name] == a {
			return fmt.Sprintf("reserved as aux address %q", name)
		}
	}
	return ""
}

func (s Subnet) reserved(a netip.Addr) bool {
	if a == s.Prefix.Addr() || a == s.Gateway || (a.Is4() && a == lastAddr(s.Prefix)) {
		return true
	}
	for _, x := range s.Aux {
		if x == a {
			return true
		}
	}
	return false
}

// Pool is the prefix automatic allocation draws from: the ip-range if set,
// else the whole subnet.
func (s Subnet) Pool() netip.Prefix {
	if s.Range.IsValid() {
		return s.Range
	}
	return s.Prefix
}

// Check validates a requested static address (--ip/--ip6). As Docker does, it
// must lie in the subnet but need not lie in the ip-range. Errors match
// ErrOutside or ErrReserved; whether the address is taken is the caller's
// question (see InUse).
func (s Subnet) Check(a netip.Addr) error {
	if !s.Prefix.IsValid() {
		return errorf(ErrInvalid, "no subnet configured")
	}
	if !a.IsValid() {
		return errorf(ErrOutside, "no address given for subnet %s", s.Prefix)
	}
	if a.Is4() != s.Prefix.Addr().Is4() {
		return errorf(ErrOutside, "address %s is %s but subnet %s is %s", a, family(a), s.Prefix, family(s.Prefix.Addr()))
	}
	if !s.Prefix.Contains(a) {
		return errorf(ErrOutside, "address %s is outside subnet %s", a, s.Prefix)
	}
	if r := s.role(a); r != "" {
		return errorf(ErrReserved, "address %s is %s of subnet %s", a, r, s.Prefix)
	}
	return nil
}

// Allocate returns the first address after last (in the pool, wrapping once,
// as CNI host-local does) that is not reserved and for which used is false.
// A last outside the pool starts the scan at the pool's beginning. used is
// called at most once per address, so the caller can answer from its store.
func (s Subnet) Allocate(last netip.Addr, used func(netip.Addr) bool) (netip.Addr, error) {
	pool := s.Pool()
	if !pool.IsValid() {
		return netip.Addr{}, errorf(ErrInvalid, "no subnet configured")
	}
	first := pool.Addr()
	start := first
	if last.IsValid() && pool.Contains(last) {
		start = s.next(pool, last)
	}

	network, gw := s.Prefix.Addr(), s.Gateway
	var broadcast netip.Addr // stays invalid on IPv6, which has none
	if network.Is4() {
		broadcast = lastAddr(s.Prefix)
	}
	aux := make([]netip.Addr, 0, len(s.Aux))
	for _, x := range s.Aux {
		aux = append(aux, x)
	}

	n, capped := poolSize(pool)
	end := lastAddr(pool)
	inUse := 0
	a := start
	for i := uint64(0); i < n; i++ {
		if a != network && a != broadcast {
			if a != gw && !contains(aux, a) && !used(a) {
				return a, nil
			}
			inUse++
		}
		if a == end {
			a = first
		} else {
			a = a.Next()
		}
	}

	what, flag := "subnet "+s.Prefix.String(), "--subnet"
	if s.Range.IsValid() {
		what, flag = fmt.Sprintf("ip-range %s of subnet %s", s.Range, s.Prefix), "--ip-range"
	}
	if capped {
		return netip.Addr{}, errorf(ErrExhausted, "%s has no free address among the %d tried from %s; remove containers or pick another address with --ip", what, n, start)
	}
	return netip.Addr{}, errorf(ErrExhausted, "%s has no free address (%d in use); use a larger %s or remove containers", what, inUse, flag)
}

func contains(list []netip.Addr, a netip.Addr) bool {
	for _, x := range list {
		if x == a {
			return true
		}
	}
	return false
}

func (s Subnet) next(pool netip.Prefix, a netip.Addr) netip.Addr {
	n := a.Next()
	if !n.IsValid() || !pool.Contains(n) {
		return pool.Addr()
	}
	return n
}

// hasAllocatable reports whether the pool holds at least one address that is
// not reserved; it only enumerates pools smaller than the reserved set.
func (s Subnet) hasAllocatable() bool {
	pool := s.Pool()
	n, _ := poolSize(pool)
	if n > uint64(3+len(s.Aux)) {
		return true
	}
	a := pool.Addr()
	for i := uint64(0); i < n; i++ {
		if !s.reserved(a) {
			return true
		}
		a = s.next(pool, a)
	}
	return false
}

// String renders the plan as Docker prints it: subnet, gateway, range, aux.
func (s Subnet) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "subnet %s gateway %s", s.Prefix, s.Gateway)
	if s.Range.IsValid() {
		fmt.Fprintf(&b, " ip-range %s", s.Range)
	}
	for _, name := range slices.Sorted(maps.Keys(s.Aux)) {
		fmt.Fprintf(&b, " aux %s=%s", name, s.Aux[name])
	}
	return b.String()
}

// poolSize returns the number of addresses in p, capped at maxProbes.
func poolSize(p netip.Prefix) (n uint64, capped bool) {
	host := p.Addr().BitLen() - p.Bits()
	if host > 24 {
		return maxProbes, true
	}
	return 1 << host, false
}

// lastAddr is the highest address of p (the IPv4 broadcast address).
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As16()
	skip := 128 - p.Addr().BitLen() // leading bytes of an IPv4 address's 16-byte form
	for i, bits := skip/8, p.Bits(); i < 16; i++ {
		switch {
		case bits >= 8:
			bits -= 8
		case bits > 0:
			b[i] |= 0xff >> bits
			bits = 0
		default:
			b[i] = 0xff
		}
	}
	if p.Addr().Is4() {
		return netip.AddrFrom4([4]byte(b[12:]))
	}
	return netip.AddrFrom16(b)
}

func parsePrefix(what, s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(strings.TrimSpace(s))
	if err != nil {
		ex := "10.1.0.0/16"
		if strings.Contains(s, ":") {
			ex = "2001:db8::/64"
		}
		return netip.Prefix{}, errorf(ErrInvalid, "invalid %s %q: want CIDR notation like %s", what, s, ex)
	}
	if m := p.Masked(); m != p {
		return netip.Prefix{}, errorf(ErrInvalid, "%s %s has host bits set; did you mean %s?", what, p, m)
	}
	return p, nil
}

func parseAddr(what, s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, errorf(ErrInvalid, "invalid %s %q: not an IP address", what, s)
	}
	return a, nil
}

func family(a netip.Addr) string {
	if a.Is4() {
		return "IPv4"
	}
	return "IPv6"
}
