package ipam

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strings"
	"testing"
)

// plus returns a+n, wrapping inside the address's family.
func plus(a netip.Addr, n uint64) netip.Addr {
	if a.Is4() {
		b := a.As4()
		v := binary.BigEndian.Uint32(b[:]) + uint32(n)
		binary.BigEndian.PutUint32(b[:], v)
		return netip.AddrFrom4(b)
	}
	b := a.As16()
	lo := binary.BigEndian.Uint64(b[8:])
	hi := binary.BigEndian.Uint64(b[:8])
	sum := lo + n
	if sum < lo {
		hi++
	}
	binary.BigEndian.PutUint64(b[8:], sum)
	binary.BigEndian.PutUint64(b[:8], hi)
	return netip.AddrFrom16(b)
}

// checkInvariants holds for every Subnet NewSubnet returns.
func checkInvariants(t *testing.T, s Subnet) {
	t.Helper()
	p := s.Prefix
	if p != p.Masked() || p.Bits() > p.Addr().BitLen()-2 {
		t.Fatalf("prefix %s not canonical or too small", p)
	}
	if !p.Contains(s.Gateway) || s.Gateway == p.Addr() || (p.Addr().Is4() && s.Gateway == lastAddr(p)) {
		t.Fatalf("gateway %s misplaced in %s", s.Gateway, p)
	}
	if !errors.Is(s.Check(s.Gateway), ErrReserved) {
		t.Fatalf("Check(gateway %s) = %v, want ErrReserved", s.Gateway, s.Check(s.Gateway))
	}
	if s.Range.IsValid() && (s.Range != s.Range.Masked() || s.Range.Bits() < p.Bits() || !p.Contains(s.Range.Addr())) {
		t.Fatalf("range %s not inside %s", s.Range, p)
	}
	for name, a := range s.Aux {
		if !p.Contains(a) || !errors.Is(s.Check(a), ErrReserved) {
			t.Fatalf("aux %s=%s misplaced in %s", name, a, p)
		}
	}
}

// checkAllocated holds for every address Allocate returns.
func checkAllocated(t *testing.T, s Subnet, a netip.Addr, used func(netip.Addr) bool) {
	t.Helper()
	if !s.Pool().Contains(a) {
		t.Fatalf("allocated %s outside pool %s", a, s.Pool())
	}
	if err := s.Check(a); err != nil {
		t.Fatalf("allocated %s fails Check: %v", a, err)
	}
	if used(a) {
		t.Fatalf("allocated used address %s", a)
	}
}

func FuzzNewSubnet(f *testing.F) {
	for _, seed := range [][5]string{
		{"10.1.0.0/16", "", "", "", ""},
		{"10.1.0.0/16", "10.1.0.254", "10.1.5.0/24", "router", "10.1.0.5"},
		{"10.1.2.3/16", "", "", "", ""},
		{"192.0.2.0/30", "192.0.2.2", "192.0.2.1/32", "a", "192.0.2.3"},
		{"10.0.0.0/31", "", "", "", ""},
		{"2001:db8::/64", "2001:db8::", "", "", ""},
		{"2001:db8::/126", "", "2001:db8::/127", "x", "2001:db8::2"},
		{"fe80::/64", "fe80::1%eth0", "", "", ""},
		{"::ffff:10.0.0.0/104", "::ffff:10.0.0.1", "", "", ""},
		{"0.0.0.0/0", "255.255.255.254", "128.0.0.0/1", "", ""},
		{"::/0", "", "::/1", "n", "::1"},
	} {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4])
	}
	f.Fuzz(func(t *testing.T, prefix, gw, rng, auxName, auxIP string) {
		var aux map[string]string
		if auxName != "" || auxIP != "" {
			aux = map[string]string{auxName: auxIP}
		}
		s, err := NewSubnet(prefix, gw, rng, aux)
		if err != nil {
			if !errors.Is(err, ErrInvalid) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q: not ErrInvalid or not one line", err)
			}
			return
		}
		checkInvariants(t, s)
		a, err := s.Allocate(netip.Addr{}, none)
		if err != nil {
			t.Fatalf("first allocation in %s: %v", s, err)
		}
		checkAllocated(t, s, a, none)
	})
}

func FuzzAllocate(f *testing.F) {
	f.Add("10.1.0.0/24", "", "", "10.1.0.3", "10.1.0.100", []byte{101, 0, 102, 0}, false)
	f.Add("10.1.0.0/24", "10.1.0.254", "", "", "10.1.0.254", []byte{2, 0}, false)
	f.Add("10.1.0.0/28", "", "10.1.0.8/29", "10.1.0.9", "", []byte{}, true)
	f.Add("192.0.2.0/30", "", "", "", "192.0.2.2", []byte{2, 0}, false)
	f.Add("192.0.2.0/30", "", "", "", "", []byte{}, true)
	f.Add("2001:db8::/120", "", "", "2001:db8::2", "2001:db8::ff", []byte{2, 0, 3, 0}, false)
	f.Add("2001:db8::/126", "2001:db8::3", "", "", "2001:db8::3", []byte{1, 0, 2, 0}, false)
	f.Add("10.0.0.0/8", "", "", "", "10.255.255.254", []byte{0xff, 0xff}, false)
	f.Fuzz(func(t *testing.T, prefix, gw, rng, auxIP, lastStr string, usedOffsets []byte, allBut bool) {
		var aux map[string]string
		if auxIP != "" {
			aux = map[string]string{"aux": auxIP}
		}
		s, err := NewSubnet(prefix, gw, rng, aux)
		if err != nil {
			return
		}
		pool := s.Pool()
		size, capped := poolSize(pool)
		// "allBut" marks every address used except the listed ones; only on
		// pools small enough to check exhaustively.
		if allBut && (capped || size > 1<<12) {
			allBut = false
		}
		listed := map[netip.Addr]bool{}
		for i := 0; i+1 < len(usedOffsets); i += 2 {
			off := uint64(binary.LittleEndian.Uint16(usedOffsets[i:]))
			if !capped {
				off %= size
			}
			listed[plus(pool.Addr(), off)] = true
		}
		used := func(a netip.Addr) bool { return listed[a] != allBut }
		last, _ := netip.ParseAddr(lastStr)

		a, err := s.Allocate(last, used)
		if err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("Allocate: %v is not ErrExhausted", err)
			}
			if capped {
				t.Fatalf("exhausted a huge pool %s with %d used addresses", pool, len(listed))
			}
			for i, x := uint64(0), pool.Addr(); i < size; i, x = i+1, x.Next() {
				if s.Check(x) == nil && !used(x) {
					t.Fatalf("Allocate reported exhaustion but %s is free", x)
				}
			}
			return
		}
		checkAllocated(t, s, a, used)
		// Round robin: nothing free lies between last and a.
		if !capped && last.IsValid() && pool.Contains(last) {
			for x := s.next(pool, last); x != a; x = s.next(pool, x) {
				if s.Check(x) == nil && !used(x) {
					t.Fatalf("Allocate(%s) = %s skipped free %s", last, a, x)
				}
			}
		}
	})
}

func FuzzPickSubnet(f *testing.F) {
	f.Add([]byte{0, 0, 0, 0, 1, 128, 0, 0, 0, 1})
	f.Add([]byte{172, 17, 5, 0, 24})
	f.Add([]byte{172, 16, 0, 0, 12, 192, 168, 0, 0, 16})
	f.Add([]byte{0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		var used []netip.Prefix
		for ; len(b) >= 5; b = b[5:] {
			p, err := netip.AddrFrom4([4]byte(b[:4])).Prefix(int(b[4] % 33))
			if err == nil {
				used = append(used, p)
			}
		}
		cands := DefaultPools()
		got, err := PickSubnet(cands, used)
		if err != nil {
			if !errors.Is(err, ErrExhausted) {
				t.Fatalf("PickSubnet: %v is not ErrExhausted", err)
			}
		}
		for _, c := range cands {
			_, busy := firstOverlap(c, used)
			if c == got {
				if busy {
					t.Fatalf("picked %s which overlaps %v", got, used)
				}
				return
			}
			if !busy {
				t.Fatalf("skipped free candidate %s (picked %s, err %v)", c, got, err)
			}
		}
	})
}

func FuzzFromFlags(f *testing.F) {
	f.Add("10.1.0.0/16,2001:db8::/64", "10.1.4.0/24", "10.1.0.254", "r=10.1.0.5")
	f.Add("10.1.0.0/16,10.1.0.0/24", "", "", "")
	f.Add("", "10.1.0.0/24", "", "")
	f.Add("10.1.0.0/30", "10.1.0.1/32", "", "a=10.1.0.2")
	f.Fuzz(func(t *testing.T, subnets, ranges, gws, aux string) {
		split := func(s string) []string {
			if s == "" {
				return nil
			}
			return strings.Split(s, ",")
		}
		got, err := FromFlags(split(subnets), split(ranges), split(gws), split(aux))
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("FromFlags: %v is not ErrInvalid", err)
			}
			return
		}
		if err := CheckDisjoint(got); err != nil {
			t.Fatal(err)
		}
		for _, s := range got {
			checkInvariants(t, s)
		}
	})
}
