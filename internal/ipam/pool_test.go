package ipam

import (
	"errors"
	"net/netip"
	"testing"
)

func TestDefaultPools(t *testing.T) {
	p := DefaultPools()
	if len(p) != 31 {
		t.Fatalf("got %d candidates, want 31", len(p))
	}
	want := map[int]string{0: "172.17.0.0/16", 1: "172.18.0.0/16", 14: "172.31.0.0/16",
		15: "192.168.0.0/20", 16: "192.168.16.0/20", 30: "192.168.240.0/20"}
	for i, w := range want {
		if p[i] != pfx(w) {
			t.Errorf("candidate %d = %s, want %s", i, p[i], w)
		}
	}
	for i := range p {
		for j := i + 1; j < len(p); j++ {
			if Overlaps(p[i], p[j]) {
				t.Errorf("candidates %s and %s overlap", p[i], p[j])
			}
		}
	}
	p[0] = pfx("10.0.0.0/8")
	if DefaultPools()[0] != pfx("172.17.0.0/16") {
		t.Error("DefaultPools shares its slice between calls")
	}
}

func TestSplitPool(t *testing.T) {
	got, err := SplitPool(pfx("10.10.0.0/16"), 18)
	if err != nil {
		t.Fatal(err)
	}
	want := []netip.Prefix{pfx("10.10.0.0/18"), pfx("10.10.64.0/18"), pfx("10.10.128.0/18"), pfx("10.10.192.0/18")}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("got[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if got, _ := SplitPool(pfx("255.255.255.0/24"), 25); len(got) != 2 || got[1] != pfx("255.255.255.128/25") {
		t.Errorf("split at the end of the address space: %v", got)
	}
	if got, _ := SplitPool(pfx("fd00::/48"), 64); len(got) != 65536 || got[65535] != pfx("fd00:0:0:ffff::/64") {
		t.Errorf("v6 split: %d subnets, last %s", len(got), got[len(got)-1])
	}
	for _, tt := range []struct {
		base netip.Prefix
		size int
		want string
	}{
		{pfx("10.0.0.0/16"), 8, "address pool 10.0.0.0/16: size /8 must be between /16 and /32"},
		{pfx("10.0.0.0/16"), 33, "address pool 10.0.0.0/16: size /33 must be between /16 and /32"},
		{pfx("10.0.0.0/8"), 25, "address pool 10.0.0.0/8 split into /25 gives more than 65536 subnets; use a larger size"},
		{netip.Prefix{}, 24, "invalid address pool base"},
	} {
		_, err := SplitPool(tt.base, tt.size)
		if err == nil || err.Error() != tt.want {
			t.Errorf("SplitPool(%s, %d):\n got %v\nwant %s", tt.base, tt.size, err, tt.want)
		}
	}
}

func TestOverlaps(t *testing.T) {
	tests := []struct {
		a, b netip.Prefix
		want bool
	}{
		{pfx("10.0.0.0/8"), pfx("10.1.0.0/16"), true},
		{pfx("10.1.0.0/16"), pfx("10.0.0.0/8"), true},
		{pfx("10.1.0.0/16"), pfx("10.1.0.0/16"), true},
		{pfx("10.1.0.0/16"), pfx("10.2.0.0/16"), false},
		{pfx("172.17.0.0/16"), pfx("172.17.5.0/24"), true},
		{pfx("172.17.0.0/16"), pfx("172.17.5.9/32"), true},
		{pfx("0.0.0.0/1"), pfx("10.0.0.0/8"), true},
		{pfx("128.0.0.0/1"), pfx("10.0.0.0/8"), false},
		{pfx("10.0.0.0/8"), pfx("::/0"), false},
		{pfx("2001:db8::/32"), pfx("2001:db8:1::/48"), true},
		{pfx("10.1.2.3/16"), pfx("10.1.200.0/24"), true}, // unmasked input still compares networks
		{netip.Prefix{}, pfx("10.0.0.0/8"), false},
		{pfx("10.0.0.0/8"), netip.Prefix{}, false},
	}
	for _, tt := range tests {
		if got := Overlaps(tt.a, tt.b); got != tt.want {
			t.Errorf("Overlaps(%s, %s) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		out[i] = pfx(s)
	}
	return out
}

func TestPickSubnet(t *testing.T) {
	tests := []struct {
		name string
		used []netip.Prefix
		want string
	}{
		{"nothing used", nil, "172.17.0.0/16"},
		{"docker0 present", prefixes("172.17.0.0/16"), "172.18.0.0/16"},
		{"more specific host route", prefixes("172.17.5.0/24"), "172.18.0.0/16"},
		{"host address /32", prefixes("172.17.0.1/32"), "172.18.0.0/16"},
		{"unmasked host address network", prefixes("172.17.3.4/16", "172.18.9.9/24"), "172.19.0.0/16"},
		{"covering route", prefixes("172.16.0.0/12"), "192.168.0.0/20"},
		{"covering route and lan", prefixes("172.16.0.0/12", "192.168.0.0/24", "192.168.16.1/32"), "192.168.32.0/20"},
		{"default route ignored", prefixes("0.0.0.0/0", "::/0"), "172.17.0.0/16"},
		{"other family ignored", prefixes("::/1", "8000::/1"), "172.17.0.0/16"},
		{"lower half of a vpn split", prefixes("0.0.0.0/1"), "172.17.0.0/16"},
		{"invalid used ignored", []netip.Prefix{{}}, "172.17.0.0/16"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PickSubnet(DefaultPools(), tt.used)
			if err != nil {
				t.Fatal(err)
			}
			if got != pfx(tt.want) {
				t.Errorf("got %s, want %s", got, tt.want)
			}
		})
	}
}

func TestPickSubnetExhausted(t *testing.T) {
	tests := []struct {
		name       string
		candidates []netip.Prefix
		used       []netip.Prefix
		want       string
	}{
		{"vpn split covers everything", DefaultPools(), prefixes("0.0.0.0/1", "128.0.0.0/1"),
			"no free subnet: all 31 candidates from 172.17.0.0/16 to 192.168.240.0/20 overlap a host address, route or network (e.g. 172.17.0.0/16 overlaps 128.0.0.0/1); pass --subnet"},
		{"upper half alone covers 172.16/12 and 192.168/16", DefaultPools(), prefixes("128.0.0.0/1"),
			"no free subnet: all 31 candidates from 172.17.0.0/16 to 192.168.240.0/20 overlap a host address, route or network (e.g. 172.17.0.0/16 overlaps 128.0.0.0/1); pass --subnet"},
		{"all taken one by one", prefixes("10.0.0.0/24", "10.0.1.0/24"), prefixes("10.0.1.7/32", "10.0.0.0/23"),
			"no free subnet: all 2 candidates from 10.0.0.0/24 to 10.0.1.0/24 overlap a host address, route or network (e.g. 10.0.0.0/24 overlaps 10.0.0.0/23); pass --subnet"},
		{"no candidates", nil, nil, "no free subnet: the address pool is empty; pass --subnet"},
		{"only invalid candidates", []netip.Prefix{{}}, nil, "no free subnet: the address pool holds no valid subnet; pass --subnet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := PickSubnet(tt.candidates, tt.used)
			if err == nil {
				t.Fatalf("got %s, want error", got)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrExhausted) {
				t.Error("error does not match ErrExhausted")
			}
		})
	}
}
