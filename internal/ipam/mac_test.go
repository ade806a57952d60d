package ipam

import (
	"net/netip"
	"testing"
)

func TestMACFromIP(t *testing.T) {
	tests := []struct {
		in   netip.Addr
		want string
	}{
		{addr("172.17.0.2"), "02:42:ac:11:00:02"},
		{addr("10.1.255.254"), "02:42:0a:01:ff:fe"},
		{addr("::ffff:192.168.0.9"), "02:42:c0:a8:00:09"},
		{addr("2001:db8::1"), ""},
		{netip.Addr{}, ""},
	}
	for _, tt := range tests {
		got := MACFromIP(tt.in)
		if got.String() != tt.want {
			t.Errorf("MACFromIP(%s) = %q, want %q", tt.in, got, tt.want)
		}
		if got != nil && (got[0]&1 != 0 || got[0]&2 == 0) {
			t.Errorf("MACFromIP(%s) = %s is not a locally administered unicast MAC", tt.in, got)
		}
	}
}
