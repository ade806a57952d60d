package ipam

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"testing"
)

func mustSubnet(t testing.TB, prefix, gw, rng string, aux map[string]string) Subnet {
	t.Helper()
	s, err := NewSubnet(prefix, gw, rng, aux)
	if err != nil {
		t.Fatalf("NewSubnet(%q, %q, %q, %v): %v", prefix, gw, rng, aux, err)
	}
	return s
}

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func TestNewSubnet(t *testing.T) {
	tests := []struct {
		name              string
		prefix, gw, rng   string
		aux               map[string]string
		wantGW, wantRange string
		wantAux           map[string]string
	}{
		{name: "v4 defaults", prefix: "10.1.0.0/16", wantGW: "10.1.0.1"},
		{name: "v4 explicit gateway", prefix: "10.1.0.0/16", gw: "10.1.200.254", wantGW: "10.1.200.254"},
		{name: "gateway outside range is fine", prefix: "10.1.0.0/16", gw: "10.1.0.1", rng: "10.1.5.0/24", wantGW: "10.1.0.1", wantRange: "10.1.5.0/24"},
		{name: "range equal to subnet", prefix: "10.1.0.0/24", rng: "10.1.0.0/24", wantGW: "10.1.0.1", wantRange: "10.1.0.0/24"},
		{name: "v4 /30 smallest", prefix: "192.0.2.0/30", wantGW: "192.0.2.1"},
		{name: "v4 /30 gateway .2", prefix: "192.0.2.0/30", gw: "192.0.2.2", wantGW: "192.0.2.2"},
		{name: "range /32 on a free host", prefix: "10.1.0.0/24", rng: "10.1.0.7/32", wantGW: "10.1.0.1", wantRange: "10.1.0.7/32"},
		{name: "aux", prefix: "10.1.0.0/24", aux: map[string]string{"router": "10.1.0.254", "dns": " 10.1.0.2 "},
			wantGW: "10.1.0.1", wantAux: map[string]string{"router": "10.1.0.254", "dns": "10.1.0.2"}},
		{name: "aux outside range", prefix: "10.1.0.0/16", rng: "10.1.1.0/24", aux: map[string]string{"r": "10.1.0.9"},
			wantGW: "10.1.0.1", wantRange: "10.1.1.0/24", wantAux: map[string]string{"r": "10.1.0.9"}},
		{name: "v6 defaults", prefix: "2001:db8::/64", wantGW: "2001:db8::1"},
		{name: "v6 /126 smallest", prefix: "2001:db8::/126", wantGW: "2001:db8::1"},
		{name: "v6 last address is usable", prefix: "2001:db8::/126", gw: "2001:db8::3", wantGW: "2001:db8::3"},
		{name: "v6 range", prefix: "fd00:1::/64", rng: "fd00:1::100/120", wantGW: "fd00:1::1", wantRange: "fd00:1::100/120"},
		{name: "whitespace trimmed", prefix: " 10.1.0.0/16 ", gw: " 10.1.0.3", wantGW: "10.1.0.3"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := mustSubnet(t, tt.prefix, tt.gw, tt.rng, tt.aux)
			if got := s.Gateway.String(); got != tt.wantGW {
				t.Errorf("gateway = %s, want %s", got, tt.wantGW)
			}
			if tt.wantRange == "" {
				if s.Range.IsValid() {
					t.Errorf("range = %s, want none", s.Range)
				}
			} else if got := s.Range.String(); got != tt.wantRange {
				t.Errorf("range = %s, want %s", got, tt.wantRange)
			}
			got := map[string]string{}
			for k, v := range s.Aux {
				got[k] = v.String()
			}
			if len(tt.wantAux) > 0 || len(got) > 0 {
				if !maps.Equal(got, tt.wantAux) {
					t.Errorf("aux = %v, want %v", got, tt.wantAux)
				}
			}
		})
	}
}

func TestNewSubnetErrors(t *testing.T) {
	tests := []struct {
		name            string
		prefix, gw, rng string
		aux             map[string]string
		want            string
	}{
		{"empty subnet", "", "", "", nil, `invalid subnet "": want CIDR notation like 10.1.0.0/16`},
		{"not a cidr", "10.1.0.0", "", "", nil, `invalid subnet "10.1.0.0": want CIDR notation like 10.1.0.0/16`},
		{"bad length", "10.1.0.0/33", "", "", nil, `invalid subnet "10.1.0.0/33": want CIDR notation like 10.1.0.0/16`},
		{"bad v6", "2001:db8::/129", "", "", nil, `invalid subnet "2001:db8::/129": want CIDR notation like 2001:db8::/64`},
		{"host bits", "10.1.2.3/16", "", "", nil, `subnet 10.1.2.3/16 has host bits set; did you mean 10.1.0.0/16?`},
		{"v6 host bits", "2001:db8::1/64", "", "", nil, `subnet 2001:db8::1/64 has host bits set; did you mean 2001:db8::/64?`},
		{"v4 /31", "10.0.0.0/31", "", "", nil, `subnet 10.0.0.0/31 is too small: it needs room for a gateway and at least one container (use /30 or larger)`},
		{"v4 /32", "10.0.0.7/32", "", "", nil, `subnet 10.0.0.7/32 is too small: it needs room for a gateway and at least one container (use /30 or larger)`},
		{"v6 /127", "2001:db8::/127", "", "", nil, `subnet 2001:db8::/127 is too small: it needs room for a gateway and at least one container (use /126 or larger)`},
		{"v6 /128", "2001:db8::1/128", "", "", nil, `subnet 2001:db8::1/128 is too small: it needs room for a gateway and at least one container (use /126 or larger)`},
		{"gateway not an ip", "10.1.0.0/16", "10.1.0.x", "", nil, `invalid gateway "10.1.0.x": not an IP address`},
		{"gateway with zone", "fd00::/64", "fd00::1%eth0", "", nil, `invalid gateway "fd00::1%eth0": not an IP address`},
		{"multicast", "224.0.0.0/24", "", "", nil, `subnet 224.0.0.0/24 overlaps 224.0.0.0/4 (multicast), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"limited broadcast", "255.255.255.0/24", "", "", nil, `subnet 255.255.255.0/24 overlaps 240.0.0.0/4 (reserved, with the broadcast address 255.255.255.255), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"this network", "0.0.0.0/8", "", "", nil, `subnet 0.0.0.0/8 overlaps 0.0.0.0/8 ("this network"), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"everything", "0.0.0.0/0", "", "", nil, `subnet 0.0.0.0/0 overlaps 0.0.0.0/8 ("this network"), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"loopback", "127.0.0.0/24", "", "", nil, `subnet 127.0.0.0/24 overlaps 127.0.0.0/8 (loopback), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"link-local", "169.254.0.0/24", "", "", nil, `subnet 169.254.0.0/24 overlaps 169.254.0.0/16 (link-local), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"v6 link-local", "fe80::/64", "", "", nil, `subnet fe80::/64 overlaps fe80::/10 (link-local), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"v6 multicast", "ff02::/64", "", "", nil, `subnet ff02::/64 overlaps ff00::/8 (multicast), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"v6 mapped", "::ffff:10.0.0.0/120", "", "", nil, `subnet ::ffff:10.0.0.0/120 overlaps ::ffff:0.0.0.0/96 (IPv4-mapped), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"v6 everything", "::/0", "", "", nil, `subnet ::/0 overlaps ::/128 (the unspecified address), which cannot hold container addresses; pick a private range such as 10.0.0.0/8 or fd00::/8`},
		{"gateway outside", "10.1.0.0/16", "10.2.0.1", "", nil, `gateway 10.2.0.1 is outside subnet 10.1.0.0/16`},
		{"gateway family", "10.1.0.0/16", "2001:db8::1", "", nil, `gateway 2001:db8::1 is IPv6 but subnet 10.1.0.0/16 is IPv4`},
		{"gateway mapped v4", "10.1.0.0/16", "::ffff:10.1.0.1", "", nil, `gateway ::ffff:10.1.0.1 is IPv6 but subnet 10.1.0.0/16 is IPv4`},
		{"gateway network", "10.1.0.0/16", "10.1.0.0", "", nil, `gateway 10.1.0.0 is the network address of subnet 10.1.0.0/16`},
		{"gateway broadcast", "10.1.0.0/16", "10.1.255.255", "", nil, `gateway 10.1.255.255 is the broadcast address of subnet 10.1.0.0/16`},
		{"v6 gateway anycast", "2001:db8::/64", "2001:db8::", "", nil, `gateway 2001:db8:: is the subnet-router anycast address of subnet 2001:db8::/64`},
		{"range not cidr", "10.1.0.0/16", "", "10.1.0.0", nil, `invalid ip-range "10.1.0.0": want CIDR notation like 10.1.0.0/16`},
		{"range host bits", "10.1.0.0/16", "", "10.1.0.5/24", nil, `ip-range 10.1.0.5/24 has host bits set; did you mean 10.1.0.0/24?`},
		{"range outside", "10.1.0.0/16", "", "10.2.0.0/24", nil, `ip-range 10.2.0.0/24 is outside subnet 10.1.0.0/16`},
		{"range larger", "10.1.0.0/16", "", "10.0.0.0/8", nil, `ip-range 10.0.0.0/8 is larger than subnet 10.1.0.0/16`},
		{"range larger disjoint", "10.1.0.0/16", "", "192.168.0.0/8", nil, `ip-range 192.168.0.0/8 has host bits set; did you mean 192.0.0.0/8?`},
		{"range family", "10.1.0.0/16", "", "2001:db8::/64", nil, `ip-range 2001:db8::/64 is IPv6 but subnet 10.1.0.0/16 is IPv4`},
		{"range only gateway", "10.1.0.0/24", "", "10.1.0.1/32", nil, `ip-range 10.1.0.1/32 leaves no address for containers: the gateway and reserved addresses take all of it`},
		{"range only network+gateway", "10.1.0.0/24", "", "10.1.0.0/31", nil, `ip-range 10.1.0.0/31 leaves no address for containers: the gateway and reserved addresses take all of it`},
		{"range eaten by aux", "10.1.0.0/24", "", "10.1.0.4/31", map[string]string{"a": "10.1.0.4", "b": "10.1.0.5"}, `ip-range 10.1.0.4/31 leaves no address for containers: the gateway and reserved addresses take all of it`},
		{"aux empty name", "10.1.0.0/24", "", "", map[string]string{"": "10.1.0.5"}, `aux address "10.1.0.5" has an empty name`},
		{"aux not ip", "10.1.0.0/24", "", "", map[string]string{"r": "x"}, `invalid aux address "r" "x": not an IP address`},
		{"aux outside", "10.1.0.0/24", "", "", map[string]string{"r": "10.2.0.5"}, `aux address "r" 10.2.0.5 is outside subnet 10.1.0.0/24`},
		{"aux family", "10.1.0.0/24", "", "", map[string]string{"r": "2001:db8::5"}, `aux address "r" 2001:db8::5 is IPv6 but subnet 10.1.0.0/24 is IPv4`},
		{"aux network", "10.1.0.0/24", "", "", map[string]string{"r": "10.1.0.0"}, `aux address "r" 10.1.0.0 is the network address of subnet 10.1.0.0/24`},
		{"aux broadcast", "10.1.0.0/24", "", "", map[string]string{"r": "10.1.0.255"}, `aux address "r" 10.1.0.255 is the broadcast address of subnet 10.1.0.0/24`},
		{"aux gateway", "10.1.0.0/24", "", "", map[string]string{"r": "10.1.0.1"}, `aux address "r" 10.1.0.1 is the gateway of subnet 10.1.0.0/24`},
		{"aux first error by name", "10.1.0.0/24", "", "", map[string]string{"b": "10.9.0.1", "a": "10.8.0.1"}, `aux address "a" 10.8.0.1 is outside subnet 10.1.0.0/24`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewSubnet(tt.prefix, tt.gw, tt.rng, tt.aux)
			if err == nil {
				t.Fatalf("NewSubnet succeeded, want error %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("error:\n got %s\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Errorf("error %q does not match ErrInvalid", err)
			}
		})
	}
}

func TestCheck(t *testing.T) {
	v4 := mustSubnet(t, "10.1.0.0/16", "", "10.1.5.0/24", map[string]string{"router": "10.1.0.254"})
	v6 := mustSubnet(t, "2001:db8::/64", "2001:db8::ff", "", nil)
	tests := []struct {
		s    Subnet
		a    netip.Addr
		kind error
		want string
	}{
		{v4, addr("10.1.0.5"), nil, ""}, // outside the ip-range is fine, as in Docker
		{v4, addr("10.1.5.5"), nil, ""},
		{v4, addr("10.1.255.254"), nil, ""},
		{v4, addr("10.2.0.5"), ErrOutside, "address 10.2.0.5 is outside subnet 10.1.0.0/16"},
		{v4, addr("2001:db8::5"), ErrOutside, "address 2001:db8::5 is IPv6 but subnet 10.1.0.0/16 is IPv4"},
		{v4, netip.Addr{}, ErrOutside, "no address given for subnet 10.1.0.0/16"},
		{v4, addr("10.1.0.0"), ErrReserved, "address 10.1.0.0 is the network address of subnet 10.1.0.0/16"},
		{v4, addr("10.1.255.255"), ErrReserved, "address 10.1.255.255 is the broadcast address of subnet 10.1.0.0/16"},
		{v4, addr("10.1.0.1"), ErrReserved, "address 10.1.0.1 is the gateway of subnet 10.1.0.0/16"},
		{v4, addr("10.1.0.254"), ErrReserved, `address 10.1.0.254 is reserved as aux address "router" of subnet 10.1.0.0/16`},
		{v6, addr("2001:db8::1"), nil, ""},
		{v6, addr("2001:db8::ffff:ffff:ffff:ffff"), nil, ""}, // no broadcast on IPv6
		{v6, addr("2001:db8::"), ErrReserved, "address 2001:db8:: is the subnet-router anycast address of subnet 2001:db8::/64"},
		{v6, addr("2001:db8::ff"), ErrReserved, "address 2001:db8::ff is the gateway of subnet 2001:db8::/64"},
		{v6, addr("2001:db8:1::1"), ErrOutside, "address 2001:db8:1::1 is outside subnet 2001:db8::/64"},
		{v6, addr("10.1.0.5"), ErrOutside, "address 10.1.0.5 is IPv4 but subnet 2001:db8::/64 is IPv6"},
		{Subnet{}, addr("10.1.0.5"), ErrInvalid, "no subnet configured"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%s", tt.s.Prefix, tt.a), func(t *testing.T) {
			err := tt.s.Check(tt.a)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Check(%s) = %v, want nil", tt.a, err)
				}
				return
			}
			if err == nil || err.Error() != tt.want {
				t.Fatalf("Check(%s) error:\n got %v\nwant %s", tt.a, err, tt.want)
			}
			if !errors.Is(err, tt.kind) {
				t.Errorf("Check(%s) error does not match %v", tt.a, tt.kind)
			}
		})
	}
}

func TestInUse(t *testing.T) {
	err := InUse(addr("10.1.0.5"), "web-1")
	if got, want := err.Error(), "address 10.1.0.5 is already in use by web-1"; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if !errors.Is(fmt.Errorf("network %q: %w", "web", err), ErrInUse) {
		t.Error("wrapped InUse error does not match ErrInUse")
	}
}

// set is a used-callback over a fixed set of addresses.
func set(addrs ...string) func(netip.Addr) bool {
	m := map[netip.Addr]bool{}
	for _, a := range addrs {
		m[addr(a)] = true
	}
	return func(a netip.Addr) bool { return m[a] }
}

func none(netip.Addr) bool { return false }

func TestAllocate(t *testing.T) {
	v4 := mustSubnet(t, "10.1.0.0/24", "", "", map[string]string{"r": "10.1.0.3"})
	tests := []struct {
		name string
		s    Subnet
		last string
		used func(netip.Addr) bool
		want string
	}{
		{"first skips network and gateway", v4, "", none, "10.1.0.2"},
		{"skips aux", v4, "10.1.0.2", none, "10.1.0.4"},
		{"round robin after last", v4, "10.1.0.100", none, "10.1.0.101"},
		{"skips used", v4, "10.1.0.100", set("10.1.0.101", "10.1.0.102"), "10.1.0.103"},
		{"wraps past broadcast", v4, "10.1.0.254", none, "10.1.0.2"},
		{"wraps and skips used", v4, "10.1.0.253", set("10.1.0.254", "10.1.0.2"), "10.1.0.4"},
		{"last is broadcast", v4, "10.1.0.255", none, "10.1.0.2"},
		{"last outside subnet starts over", v4, "192.168.1.1", none, "10.1.0.2"},
		{"last of other family starts over", v4, "2001:db8::1", none, "10.1.0.2"},
		{"only last itself free (wrap once)", v4, "10.1.0.77", func(a netip.Addr) bool { return a != addr("10.1.0.77") }, "10.1.0.77"},
		{"gateway not at .1", mustSubnet(t, "10.1.0.0/24", "10.1.0.2", "", nil), "", none, "10.1.0.1"},
		{"range", mustSubnet(t, "10.1.0.0/16", "", "10.1.5.0/24", nil), "", none, "10.1.5.0"},
		{"range wraps", mustSubnet(t, "10.1.0.0/16", "", "10.1.5.0/24", nil), "10.1.5.255", none, "10.1.5.0"},
		{"range at subnet end skips broadcast", mustSubnet(t, "10.1.0.0/16", "", "10.1.255.0/24", nil), "10.1.255.254", none, "10.1.255.0"},
		{"range at subnet start skips network and gateway", mustSubnet(t, "10.1.0.0/16", "", "10.1.0.0/24", nil), "", none, "10.1.0.2"},
		{"range last outside range starts at range", mustSubnet(t, "10.1.0.0/16", "", "10.1.5.0/24", nil), "10.1.0.9", none, "10.1.5.0"},
		{"/30", mustSubnet(t, "192.0.2.0/30", "", "", nil), "", none, "192.0.2.2"},
		{"/30 wraps to itself", mustSubnet(t, "192.0.2.0/30", "", "", nil), "192.0.2.2", none, "192.0.2.2"},
		{"v6 skips anycast and gateway", mustSubnet(t, "2001:db8::/64", "", "", nil), "", none, "2001:db8::2"},
		{"v6 top address is usable", mustSubnet(t, "2001:db8::/126", "", "", nil), "2001:db8::2", none, "2001:db8::3"},
		{"v6 wraps", mustSubnet(t, "2001:db8::/126", "", "", nil), "2001:db8::3", none, "2001:db8::2"},
		{"v6 /64 wraps", mustSubnet(t, "2001:db8::/64", "", "", nil), "2001:db8::ffff:ffff:ffff:ffff", none, "2001:db8::2"},
		{"v6 range", mustSubnet(t, "fd00::/64", "", "fd00::100/120", nil), "", none, "fd00::100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var last netip.Addr
			if tt.last != "" {
				last = addr(tt.last)
			}
			got, err := tt.s.Allocate(last, tt.used)
			if err != nil {
				t.Fatalf("Allocate(%s): %v", tt.last, err)
			}
			if got != addr(tt.want) {
				t.Errorf("Allocate(%s) = %s, want %s", tt.last, got, tt.want)
			}
		})
	}
}

func TestAllocateExhausted(t *testing.T) {
	all := func(netip.Addr) bool { return true }
	tests := []struct {
		name string
		s    Subnet
		want string
	}{
		{"/24", mustSubnet(t, "10.1.0.0/24", "", "", nil),
			"subnet 10.1.0.0/24 has no free address (254 in use); use a larger --subnet or remove containers"},
		{"/30", mustSubnet(t, "192.0.2.0/30", "", "", nil),
			"subnet 192.0.2.0/30 has no free address (2 in use); use a larger --subnet or remove containers"},
		{"range", mustSubnet(t, "10.1.0.0/16", "", "10.1.5.0/28", nil),
			"ip-range 10.1.5.0/28 of subnet 10.1.0.0/16 has no free address (16 in use); use a larger --ip-range or remove containers"},
		{"v6 /120", mustSubnet(t, "2001:db8::/120", "", "", nil),
			"subnet 2001:db8::/120 has no free address (255 in use); use a larger --subnet or remove containers"},
		{"v6 /64 gives up", mustSubnet(t, "2001:db8::/64", "", "", nil),
			"subnet 2001:db8::/64 has no free address among the 16777216 tried from 2001:db8::; remove containers or pick another address with --ip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if testing.Short() && tt.s.Prefix.Bits() < 100 && tt.s.Prefix.Addr().Is6() {
				t.Skip("scans 16 Mi addresses")
			}
			_, err := tt.s.Allocate(netip.Addr{}, all)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrExhausted) {
				t.Errorf("error does not match ErrExhausted")
			}
		})
	}
	// Only reserved addresses left: the gateway alone is not free.
	s := mustSubnet(t, "192.0.2.0/30", "", "", nil)
	if got, err := s.Allocate(netip.Addr{}, set("192.0.2.2")); err == nil {
		t.Errorf("Allocate in a full /30 = %s, want error", got)
	}
	if _, err := (Subnet{}).Allocate(netip.Addr{}, none); err == nil || err.Error() != "no subnet configured" {
		t.Errorf("zero Subnet: got %v", err)
	}
}

// TestAllocateCallsUsedOnce proves the callback is asked at most once per
// address, and never about reserved ones.
func TestAllocateCallsUsedOnce(t *testing.T) {
	s := mustSubnet(t, "10.1.0.0/26", "", "", map[string]string{"r": "10.1.0.9"})
	seen := map[netip.Addr]int{}
	_, err := s.Allocate(addr("10.1.0.30"), func(a netip.Addr) bool { seen[a]++; return true })
	if err == nil {
		t.Fatal("want exhaustion")
	}
	if len(seen) != 64-4 {
		t.Errorf("used asked about %d addresses, want %d", len(seen), 60)
	}
	for a, n := range seen {
		if n != 1 {
			t.Errorf("used asked %d times about %s", n, a)
		}
		if s.Check(a) != nil {
			t.Errorf("used asked about reserved %s", a)
		}
	}
}

func TestAllocateSequence(t *testing.T) {
	// Allocating in a loop with the previous result as hint hands out every
	// host address once and then reports exhaustion.
	s := mustSubnet(t, "10.9.0.0/28", "", "", nil)
	taken := map[netip.Addr]bool{}
	var last netip.Addr
	for i := 0; i < 13; i++ {
		a, err := s.Allocate(last, func(a netip.Addr) bool { return taken[a] })
		if err != nil {
			t.Fatalf("allocation %d: %v", i, err)
		}
		if want := netip.AddrFrom4([4]byte{10, 9, 0, byte(i + 2)}); a != want {
			t.Fatalf("allocation %d = %s, want %s", i, a, want)
		}
		taken[a], last = true, a
	}
	if _, err := s.Allocate(last, func(a netip.Addr) bool { return taken[a] }); !errors.Is(err, ErrExhausted) {
		t.Fatalf("15th allocation: got %v, want exhaustion", err)
	}
	// Freeing one in the middle makes the next allocation find it after wrapping.
	delete(taken, addr("10.9.0.7"))
	if a, err := s.Allocate(last, func(a netip.Addr) bool { return taken[a] }); err != nil || a != addr("10.9.0.7") {
		t.Fatalf("after release: %s, %v; want 10.9.0.7", a, err)
	}
}

func TestString(t *testing.T) {
	s := mustSubnet(t, "10.1.0.0/16", "10.1.0.254", "10.1.4.0/22", map[string]string{"b": "10.1.0.3", "a": "10.1.0.2"})
	want := "subnet 10.1.0.0/16 gateway 10.1.0.254 ip-range 10.1.4.0/22 aux a=10.1.0.2 aux b=10.1.0.3"
	if got := s.String(); got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
	if got := s.Pool(); got != pfx("10.1.4.0/22") {
		t.Errorf("Pool() = %s", got)
	}
	if got := mustSubnet(t, "10.1.0.0/16", "", "", nil).Pool(); got != pfx("10.1.0.0/16") {
		t.Errorf("Pool() without range = %s", got)
	}
}

func TestLastAddr(t *testing.T) {
	for in, want := range map[string]string{
		"10.1.0.0/16":   "10.1.255.255",
		"10.1.2.0/23":   "10.1.3.255",
		"0.0.0.0/0":     "255.255.255.255",
		"10.1.2.3/32":   "10.1.2.3",
		"10.1.2.3/20":   "10.1.15.255",
		"2001:db8::/64": "2001:db8::ffff:ffff:ffff:ffff",
		"2001:db8::/61": "2001:db8:0:7:ffff:ffff:ffff:ffff",
	} {
		if got := lastAddr(pfx(in)); got != addr(want) {
			t.Errorf("lastAddr(%s) = %s, want %s", in, got, want)
		}
	}
}
