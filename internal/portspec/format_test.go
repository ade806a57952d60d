package portspec

import (
	"slices"
	"strings"
	"testing"
)

func TestFormatPort(t *testing.T) {
	ms := ExpandFamilies(mustParseAll(t, "9000:9000", "8080:80", "443:443", "53:53/udp", "[::1]:9001:9001",
		"10.0.0.1:80:80", "127.0.0.1:80:80/sctp", "81"), true)
	got := FormatPort(ms)
	want := []string{
		"53/udp -> 0.0.0.0:53",
		"53/udp -> [::]:53",
		"80/sctp -> 127.0.0.1:80",
		"80/tcp -> 0.0.0.0:8080",
		"80/tcp -> 10.0.0.1:80",
		"80/tcp -> [::]:8080",
		"443/tcp -> 0.0.0.0:443",
		"443/tcp -> [::]:443",
		"9000/tcp -> 0.0.0.0:9000",
		"9000/tcp -> [::]:9000",
		"9001/tcp -> [::1]:9001",
	}
	if !slices.Equal(got, want) {
		t.Errorf("FormatPort:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}

	if got, want := FormatPort(mustParseAll(t, "8080:80")), []string{"80/tcp -> 0.0.0.0:8080"}; !slices.Equal(got, want) {
		t.Errorf("FormatPort(all addresses, not expanded) = %q, want %q", got, want)
	}
	if got := FormatPort(nil); got != nil {
		t.Errorf("FormatPort(nil) = %q", got)
	}
}

func TestFormatPrivate(t *testing.T) {
	ms := ExpandFamilies(mustParseAll(t, "8080:80", "127.0.0.1:9090:80", "8080:80/udp"), true)
	port, proto, err := ParsePrivate("80")
	if err != nil || port != 80 || proto != "tcp" {
		t.Fatalf("ParsePrivate(80) = %d, %q, %v", port, proto, err)
	}
	if got, want := FormatPrivate(ms, port, proto), []string{"0.0.0.0:8080", "127.0.0.1:9090", "[::]:8080"}; !slices.Equal(got, want) {
		t.Errorf("FormatPrivate(80/tcp) = %q, want %q", got, want)
	}
	if got := FormatPrivate(ms, 81, "tcp"); got != nil {
		t.Errorf("FormatPrivate(81/tcp) = %q, want none", got)
	}
	for in, want := range map[string]string{
		"http":    `private port "http": port "http" is not a number in 1-65535`,
		"0":       `private port "0": port "0" is not a number in 1-65535`,
		"80/icmp": `private port "80/icmp": protocol "icmp" is not tcp, udp or sctp`,
	} {
		if _, _, err := ParsePrivate(in); err == nil || err.Error() != want {
			t.Errorf("ParsePrivate(%q) error\n got: %v\nwant: %s", in, err, want)
		}
	}
}

func TestDisplayPorts(t *testing.T) {
	tests := []struct {
		name  string
		specs []string
		ipv6  bool
		want  string
	}{
		{"one port both families", []string{"8080:80"}, true, "0.0.0.0:8080->80/tcp, [::]:8080->80/tcp"},
		{"one port ipv4 only", []string{"8080:80"}, false, "0.0.0.0:8080->80/tcp"},
		{"same numbers", []string{"80:80"}, false, "0.0.0.0:80->80/tcp"},
		{"range collapses", []string{"8000-8010:8000-8010"}, true,
			"0.0.0.0:8000-8010->8000-8010/tcp, [::]:8000-8010->8000-8010/tcp"},
		{"remapped range does not collapse", []string{"9000-9002:8000-8002"}, false,
			"0.0.0.0:9000->8000/tcp, 0.0.0.0:9001->8001/tcp, 0.0.0.0:9002->8002/tcp"},
		{"loopback", []string{"127.0.0.1:8080:80", "[::1]:8080:80"}, true,
			"127.0.0.1:8080->80/tcp, [::1]:8080->80/tcp"},
		// Docker's order: a broken run is emitted at once, the open runs in
		// the order their keys first appeared, the remapped ports last.
		{"mixed", []string{"80:80", "8080:8080", "443:8443", "53:53/udp"}, false,
			"0.0.0.0:80->80/tcp, 0.0.0.0:53->53/udp, 0.0.0.0:8080->8080/tcp, 0.0.0.0:443->8443/tcp"},
		{"exposed only", []string{"80", "443", "8000-8002"}, false, "80/tcp, 443/tcp, 8000-8002/tcp"},
		{"udp and tcp runs", []string{"53:53/udp", "53:53", "54:54"}, false,
			"0.0.0.0:53-54->53-54/tcp, 0.0.0.0:53->53/udp"},
		{"none", nil, true, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := DisplayPorts(ExpandFamilies(mustParseAll(t, tt.specs...), tt.ipv6))
			if got != tt.want {
				t.Errorf("DisplayPorts(%q)\n got: %s\nwant: %s", tt.specs, got, tt.want)
			}
		})
	}
}

func TestNaturalCompare(t *testing.T) {
	// Cases from fvbommel/sortorder's own expectations.
	sorted := []string{"", "1", "01", "001", "2", "10", "a", "a0", "a00", "a1", "a01", "a2", "a10", "ab", "abc", "abc1", "abc2", "abc12", "b"}
	for i := range sorted {
		for j := range sorted {
			if got, want := naturalCompare(sorted[i], sorted[j]), cmpInt(i, j); got != want {
				t.Errorf("naturalCompare(%q, %q) = %d, want %d", sorted[i], sorted[j], got, want)
			}
		}
	}
}

func cmpInt(a, b int) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}
