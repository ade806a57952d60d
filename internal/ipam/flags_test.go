package ipam

import (
	"errors"
	"maps"
	"strings"
	"testing"
)

func TestParseAux(t *testing.T) {
	got, err := ParseAux([]string{"router=10.1.0.5", " dns = 10.1.0.6 ", "v6=2001:db8::5"})
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{"router": "10.1.0.5", "dns": "10.1.0.6", "v6": "2001:db8::5"}
	if !maps.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
	for _, tt := range []struct {
		in   []string
		want string
	}{
		{[]string{"router"}, `invalid aux-address "router": want NAME=IP, e.g. router=10.1.0.5`},
		{[]string{"=10.1.0.5"}, `invalid aux-address "=10.1.0.5": want NAME=IP, e.g. router=10.1.0.5`},
		{[]string{"router="}, `invalid aux-address "router=": want NAME=IP, e.g. router=10.1.0.5`},
		{[]string{"r=10.1.0.5", "r=10.1.0.6"}, `aux-address name "r" is given twice ("10.1.0.5" and "10.1.0.6")`},
	} {
		_, err := ParseAux(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseAux(%q):\n got %v\nwant %s", tt.in, err, tt.want)
		}
	}
}

func TestFromFlags(t *testing.T) {
	got, err := FromFlags(
		[]string{"10.1.0.0/16", "2001:db8::/64", "10.2.0.0/24"},
		[]string{"2001:db8::100/120", "10.1.4.0/24"},
		[]string{"10.2.0.254", "2001:db8::ff"},
		[]string{"router=10.1.0.5", "r6=2001:db8::5", "r2=10.2.0.9"},
	)
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, s := range got {
		lines = append(lines, s.String())
	}
	want := strings.Join([]string{
		"subnet 10.1.0.0/16 gateway 10.1.0.1 ip-range 10.1.4.0/24 aux router=10.1.0.5",
		"subnet 2001:db8::/64 gateway 2001:db8::ff ip-range 2001:db8::100/120 aux r6=2001:db8::5",
		"subnet 10.2.0.0/24 gateway 10.2.0.254 aux r2=10.2.0.9",
	}, "\n")
	if g := strings.Join(lines, "\n"); g != want {
		t.Errorf("got\n%s\nwant\n%s", g, want)
	}
	if err := CheckDisjoint(got); err != nil {
		t.Errorf("CheckDisjoint: %v", err)
	}

	if got, err := FromFlags(nil, nil, nil, nil); err != nil || got != nil {
		t.Errorf("no flags: got %v, %v; want nil, nil", got, err)
	}
}

func TestFromFlagsErrors(t *testing.T) {
	tests := []struct {
		name                      string
		subnets, ranges, gws, aux []string
		want                      string
	}{
		{"range without subnet", nil, []string{"10.1.0.0/24"}, nil, nil, "--ip-range \"10.1.0.0/24\" needs a --subnet that contains it"},
		{"gateway without subnet", nil, nil, []string{"10.1.0.1"}, nil, "--gateway \"10.1.0.1\" needs a --subnet that contains it"},
		{"aux without subnet", nil, nil, nil, []string{"r=10.1.0.1"}, "--aux-address needs a --subnet that contains it"},
		{"bad aux", []string{"10.1.0.0/16"}, nil, nil, []string{"r"}, `invalid aux-address "r": want NAME=IP, e.g. router=10.1.0.5`},
		{"bad subnet", []string{"10.1.0.0/16", "nope"}, nil, nil, nil, `invalid subnet "nope": want CIDR notation like 10.1.0.0/16`},
		{"overlapping subnets", []string{"10.1.0.0/16", "10.1.2.0/24"}, nil, nil, nil, "subnets 10.1.0.0/16 and 10.1.2.0/24 overlap; one network's subnets must be disjoint"},
		{"same subnet twice", []string{"10.1.0.0/16", "10.1.0.0/16"}, nil, nil, nil, "subnets 10.1.0.0/16 and 10.1.0.0/16 overlap; one network's subnets must be disjoint"},
		{"bad range", []string{"10.1.0.0/16"}, []string{"10.1.0.1/24"}, nil, nil, "ip-range 10.1.0.1/24 has host bits set; did you mean 10.1.0.0/24?"},
		{"range unmatched", []string{"10.1.0.0/16", "10.3.0.0/16"}, []string{"10.2.0.0/24"}, nil, nil, "ip-range 10.2.0.0/24 is in none of the subnets (10.1.0.0/16, 10.3.0.0/16)"},
		{"two ranges", []string{"10.1.0.0/16"}, []string{"10.1.1.0/24", "10.1.2.0/24"}, nil, nil, "ip-ranges 10.1.1.0/24 and 10.1.2.0/24 are both in subnet 10.1.0.0/16; give at most one per subnet"},
		{"bad gateway", []string{"10.1.0.0/16"}, nil, []string{"gw"}, nil, `invalid gateway "gw": not an IP address`},
		{"gateway unmatched", []string{"10.1.0.0/16"}, nil, []string{"10.2.0.1"}, nil, "gateway 10.2.0.1 is in none of the subnets (10.1.0.0/16)"},
		{"two gateways", []string{"10.1.0.0/16"}, nil, []string{"10.1.0.1", "10.1.0.2"}, nil, "gateways 10.1.0.1 and 10.1.0.2 are both in subnet 10.1.0.0/16; give at most one per subnet"},
		{"bad aux ip", []string{"10.1.0.0/16"}, nil, nil, []string{"r=x"}, `invalid aux address "r" "x": not an IP address`},
		{"aux unmatched", []string{"10.1.0.0/16"}, nil, nil, []string{"r=10.2.0.1"}, `aux address "r" 10.2.0.1 is in none of the subnets (10.1.0.0/16)`},
		{"plan invalid", []string{"10.1.0.0/16"}, nil, []string{"10.1.255.255"}, nil, "gateway 10.1.255.255 is the broadcast address of subnet 10.1.0.0/16"},
		{"subnet too small", []string{"10.1.0.0/31"}, nil, nil, nil, "subnet 10.1.0.0/31 is too small: it needs room for a gateway and at least one container (use /30 or larger)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := FromFlags(tt.subnets, tt.ranges, tt.gws, tt.aux)
			if err == nil || err.Error() != tt.want {
				t.Fatalf("error:\n got %v\nwant %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Error("error does not match ErrInvalid")
			}
		})
	}
}

func TestCheckDisjoint(t *testing.T) {
	a := mustSubnet(t, "10.1.0.0/16", "", "", nil)
	b := mustSubnet(t, "10.2.0.0/16", "", "", nil)
	c := mustSubnet(t, "10.2.3.0/24", "", "", nil)
	v6 := mustSubnet(t, "2001:db8::/64", "", "", nil)
	if err := CheckDisjoint([]Subnet{a, b, v6}); err != nil {
		t.Errorf("disjoint: %v", err)
	}
	err := CheckDisjoint([]Subnet{a, b, v6, c})
	want := "subnets 10.2.0.0/16 and 10.2.3.0/24 overlap; one network's subnets must be disjoint"
	if err == nil || err.Error() != want {
		t.Errorf("got %v, want %s", err, want)
	}
}
