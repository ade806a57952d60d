package ipam

import "net/netip"

// maxSplit bounds SplitPool so a careless base/size pair cannot allocate
// millions of candidates.
const maxSplit = 1 << 16

// DefaultPools returns Docker's automatic IPv4 subnets in the order Docker tries
// them: 172.17.0.0/16 … 172.31.0.0/16, then 192.168.0.0/16 in /20 steps
// (192.168.0.0/20 … 192.168.240.0/20); 31 candidates. The slice is fresh on
// every call.
func DefaultPools() []netip.Prefix {
	out := make([]netip.Prefix, 0, 31)
	for b := byte(17); b <= 31; b++ {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{172, b, 0, 0}), 16))
	}
	split, _ := SplitPool(netip.MustParsePrefix("192.168.0.0/16"), 20)
	return append(out, split...)
}

// SplitPool cuts base into consecutive subnets of length size, as Docker's
// default-address-pools {"base": …, "size": …} does.
func SplitPool(base netip.Prefix, size int) ([]netip.Prefix, error) {
	if !base.IsValid() {
		return nil, errorf(ErrInvalid, "invalid address pool base")
	}
	base = base.Masked()
	if size < base.Bits() || size > base.Addr().BitLen() {
		return nil, errorf(ErrInvalid, "address pool %s: size /%d must be between /%d and /%d", base, size, base.Bits(), base.Addr().BitLen())
	}
	if size-base.Bits() > 16 {
		return nil, errorf(ErrInvalid, "address pool %s split into /%d gives more than %d subnets; use a larger size", base, size, maxSplit)
	}
	n := 1 << (size - base.Bits())
	out := make([]netip.Prefix, 0, n)
	p := netip.PrefixFrom(base.Addr(), size)
	for range n {
		out = append(out, p)
		p = netip.PrefixFrom(lastAddr(p).Next(), size)
	}
	return out, nil
}

// Overlaps reports whether a and b share any address. Prefixes of different
// families, and invalid prefixes, never overlap.
func Overlaps(a, b netip.Prefix) bool {
	return a.IsValid() && b.IsValid() && a.Overlaps(b)
}

// PickSubnet returns the first candidate that overlaps none of used: the
// networks of host addresses, host routes (including VPN-style 0.0.0.0/1 +
// 128.0.0.0/1 splits and routes more specific than a candidate) and other
// networks' subnets. A /0 in used is skipped, as Docker skips the default route
// (it would otherwise rule out every candidate).
func PickSubnet(candidates, used []netip.Prefix) (netip.Prefix, error) {
	if len(candidates) == 0 {
		return netip.Prefix{}, errorf(ErrExhausted, "no free subnet: the address pool is empty; pass --subnet")
	}
	var busy, hit netip.Prefix // the first taken candidate, for the error
	for _, c := range candidates {
		if !c.IsValid() {
			continue
		}
		h, ok := firstOverlap(c, used)
		if !ok {
			return c.Masked(), nil
		}
		if !busy.IsValid() {
			busy, hit = c, h
		}
	}
	if !busy.IsValid() {
		return netip.Prefix{}, errorf(ErrExhausted, "no free subnet: the address pool holds no valid subnet; pass --subnet")
	}
	first, last := candidates[0], candidates[len(candidates)-1]
	return netip.Prefix{}, errorf(ErrExhausted,
		"no free subnet: all %d candidates from %s to %s overlap a host address, route or network (e.g. %s overlaps %s); pass --subnet",
		len(candidates), first, last, busy, hit)
}

func firstOverlap(c netip.Prefix, used []netip.Prefix) (netip.Prefix, bool) {
	for _, u := range used {
		if u.IsValid() && u.Bits() > 0 && c.Overlaps(u) {
			return u, true
		}
	}
	return netip.Prefix{}, false
}
