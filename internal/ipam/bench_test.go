package ipam

import (
	"fmt"
	"net/netip"
	"testing"
)

// nearlyFull returns a /16 with 65,000 of its 65,534 host addresses used (plus
// the gateway), the free hole starting right after the used block.
func nearlyFull(b *testing.B) (Subnet, map[netip.Addr]bool, netip.Addr) {
	b.Helper()
	s := mustSubnet(b, "10.1.0.0/16", "", "", nil)
	used := make(map[netip.Addr]bool, 65000)
	a := addr("10.1.0.2")
	var lastUsed netip.Addr
	for range 65000 {
		used[a], lastUsed = true, a
		a = a.Next()
	}
	return s, used, lastUsed
}

func BenchmarkAllocateNearlyFull16(b *testing.B) {
	s, used, lastUsed := nearlyFull(b)
	// Two callers: a map, as a store cache would be, and a bitmap, which shows
	// Allocate's own cost per probe.
	var bits [1 << 16]bool
	for a := range used {
		b4 := a.As4()
		bits[int(b4[2])<<8|int(b4[3])] = true
	}
	callbacks := []struct {
		name string
		used func(netip.Addr) bool
	}{
		{"map", func(a netip.Addr) bool { return used[a] }},
		{"bitmap", func(a netip.Addr) bool { b4 := a.As4(); return bits[int(b4[2])<<8|int(b4[3])] }},
	}
	hints := []struct {
		name string
		last netip.Addr
	}{
		{"good_hint", lastUsed},                   // the next address is free
		{"no_hint", netip.Addr{}},                 // scans the 65,000 used from the start
		{"hint_after_hole", addr("10.1.255.254")}, // wraps, then scans the used block
	}
	for _, cb := range callbacks {
		for _, h := range hints {
			b.Run(cb.name+"/"+h.name, func(b *testing.B) {
				var got netip.Addr
				for b.Loop() {
					var err error
					if got, err = s.Allocate(h.last, cb.used); err != nil {
						b.Fatal(err)
					}
				}
				if want := lastUsed.Next(); got != want {
					b.Fatalf("got %s, want %s", got, want)
				}
			})
		}
	}
}

func BenchmarkPickSubnet(b *testing.B) {
	cands := DefaultPools()
	for _, n := range []int{10, 200} {
		// n host routes, the first 20 of which take the first 20 candidates.
		used := make([]netip.Prefix, 0, n)
		for i := range n {
			if i < 20 {
				used = append(used, cands[i])
				continue
			}
			used = append(used, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24))
		}
		b.Run(fmt.Sprintf("%d_routes", n), func(b *testing.B) {
			for b.Loop() {
				if _, err := PickSubnet(cands, used); err != nil && n > 20 {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("vpn_split_exhausted", func(b *testing.B) {
		used := prefixes("0.0.0.0/1", "128.0.0.0/1")
		for b.Loop() {
			if _, err := PickSubnet(cands, used); err == nil {
				b.Fatal("want exhaustion")
			}
		}
	})
}
