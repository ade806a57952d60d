package dns

import (
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"

	mdns "github.com/miekg/dns"
)

// index is an immutable view of every record, built once per Update.
type index struct {
	names map[string]map[string][]netip.Addr // network → lower-case name → addresses
	ptrs  map[string]map[netip.Addr]string   // network → address → "name.network."
	rr    sync.Map                           // name → *atomic.Uint32, the round-robin turn
}

func buildIndex(records []Record) *index {
	ix := &index{names: map[string]map[string][]netip.Addr{}, ptrs: map[string]map[netip.Addr]string{}}
	for _, r := range records {
		if r.Network == "" {
			continue
		}
		names := ix.names[r.Network]
		if names == nil {
			names = map[string][]netip.Addr{}
			ix.names[r.Network] = names
			ix.ptrs[r.Network] = map[netip.Addr]string{}
		}
		for _, n := range append([]string{r.Name}, r.Aliases...) {
			n = canonical(n)
			if n == "" {
				continue
			}
			for _, a := range r.Addrs {
				a = a.Unmap()
				if a.IsValid() && !contains(names[n], a) {
					names[n] = append(names[n], a)
				}
			}
		}
		ptr := mdns.Fqdn(canonical(r.Name) + "." + strings.ToLower(r.Network))
		if _, ok := mdns.IsDomainName(ptr); !ok || r.Name == "" {
			continue
		}
		for _, a := range r.Addrs {
			if _, taken := ix.ptrs[r.Network][a.Unmap()]; !taken {
				ix.ptrs[r.Network][a.Unmap()] = ptr
			}
		}
	}
	return ix
}

// canonical is a name as looked up: lower case, without the final dot.
func canonical(name string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(name)), ".")
}

func contains(as []netip.Addr, a netip.Addr) bool {
	for _, b := range as {
		if a == b {
			return true
		}
	}
	return false
}

// lookup finds name on the given networks. A name is also found as
// "name.network", as Docker allows. found is true when the name exists even
// if it has no address of the asked family.
func (ix *index) lookup(networks []string, name string) (addrs []netip.Addr, found bool) {
	name = canonical(name)
	add := func(as []netip.Addr) {
		for _, a := range as {
			if !contains(addrs, a) {
				addrs = append(addrs, a)
			}
		}
	}
	for _, n := range networks {
		if as, ok := ix.names[n][name]; ok {
			found = true
			add(as)
		}
	}
	if found {
		return addrs, true
	}
	for _, n := range networks {
		if base, ok := strings.CutSuffix(name, "."+strings.ToLower(n)); ok {
			if as, ok := ix.names[n][base]; ok {
				found = true
				add(as)
			}
		}
	}
	return addrs, found
}

// reverse finds the PTR name of addr on the given networks.
func (ix *index) reverse(networks []string, addr netip.Addr) (string, bool) {
	for _, n := range networks {
		if name, ok := ix.ptrs[n][addr.Unmap()]; ok {
			return name, true
		}
	}
	return "", false
}

// rotate returns addrs starting at the name's next turn, so that successive
// queries for a shared alias spread over its containers.
func (ix *index) rotate(name string, addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	v, _ := ix.rr.LoadOrStore(canonical(name), new(atomic.Uint32))
	k := int((v.(*atomic.Uint32).Add(1) - 1) % uint32(len(addrs)))
	return append(addrs[k:len(addrs):len(addrs)], addrs[:k]...)
}

// ptrAddr parses a reverse-lookup name (in-addr.arpa or ip6.arpa) into the
// address it asks about.
func ptrAddr(name string) (netip.Addr, bool) {
	name = canonical(name)
	if rest, ok := strings.CutSuffix(name, ".in-addr.arpa"); ok {
		labels := strings.Split(rest, ".")
		if len(labels) != 4 {
			return netip.Addr{}, false
		}
		for i, j := 0, len(labels)-1; i < j; i, j = i+1, j-1 {
			labels[i], labels[j] = labels[j], labels[i]
		}
		a, err := netip.ParseAddr(strings.Join(labels, "."))
		return a, err == nil && a.Is4()
	}
	if rest, ok := strings.CutSuffix(name, ".ip6.arpa"); ok {
		nibbles := strings.Split(rest, ".")
		if len(nibbles) != 32 {
			return netip.Addr{}, false
		}
		var b [16]byte
		for i, nb := range nibbles {
			if len(nb) != 1 {
				return netip.Addr{}, false
			}
			v := strings.IndexByte("0123456789abcdef", nb[0])
			if v < 0 {
				return netip.Addr{}, false
			}
			pos := 31 - i // the first label is the last nibble
			if pos%2 == 0 {
				b[pos/2] |= byte(v) << 4
			} else {
				b[pos/2] |= byte(v)
			}
		}
		return netip.AddrFrom16(b), true
	}
	return netip.Addr{}, false
}
