package trace

import "testing"

func TestParsePacket(t *testing.T) {
	for in, want := range map[string]Packet{"": {Proto: "icmp"}, "icmp": {Proto: "icmp"}, "80": {"tcp", 80},
		"53/udp": {"udp", 53}, "9000/SCTP": {"sctp", 9000}, "65535/tcp": {"tcp", 65535}} {
		if got, err := ParsePacket(in); err != nil || got != want {
			t.Errorf("ParsePacket(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"0/tcp", "65536/tcp", "80/icmp", "80/", "/tcp", "x/tcp", "-1", "80/tcp/udp", "８０/tcp", " 80/tcp"} {
		if p, err := ParsePacket(bad); err == nil {
			t.Errorf("ParsePacket(%q) = %v, want an error", bad, p)
		}
	}
}
