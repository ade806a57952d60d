package portspec

import (
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

func ip(s string) netip.Addr { return netip.MustParseAddr(s) }

func tcp(hostIP string, host, ctr uint16) Mapping {
	m := Mapping{HostPort: host, ContainerPort: ctr, Proto: "tcp"}
	if hostIP != "" {
		m.HostIP = ip(hostIP)
	}
	return m
}

func TestParse(t *testing.T) {
	tests := []struct {
		in   string
		want []Mapping
	}{
		{"80", []Mapping{tcp("", 0, 80)}},
		{"8080:80", []Mapping{tcp("", 8080, 80)}},
		{"127.0.0.1:8080:80", []Mapping{tcp("127.0.0.1", 8080, 80)}},
		{"127.0.0.1::80", []Mapping{tcp("127.0.0.1", 0, 80)}},
		{"[::1]:8080:80", []Mapping{tcp("::1", 8080, 80)}},
		{"[::1]::80", []Mapping{tcp("::1", 0, 80)}},
		{"[::]:8080:80", []Mapping{tcp("::", 8080, 80)}},
		{"0.0.0.0:8080:80", []Mapping{tcp("0.0.0.0", 8080, 80)}},
		{"[127.0.0.1]:8080:80", []Mapping{tcp("127.0.0.1", 8080, 80)}},
		{"[::ffff:10.0.0.1]:8080:80", []Mapping{tcp("10.0.0.1", 8080, 80)}},
		{"8080:80/udp", []Mapping{{HostPort: 8080, ContainerPort: 80, Proto: "udp"}}},
		{"9000:9000/sctp", []Mapping{{HostPort: 9000, ContainerPort: 9000, Proto: "sctp"}}},
		{"8080:80/TCP", []Mapping{tcp("", 8080, 80)}},
		{"80/", []Mapping{tcp("", 0, 80)}},
		{":80", []Mapping{tcp("", 0, 80)}},
		{"::80", []Mapping{tcp("", 0, 80)}},
		{"0:80", []Mapping{tcp("", 0, 80)}},
		{"08080:080", []Mapping{tcp("", 8080, 80)}},
		{"65535:65535", []Mapping{tcp("", 65535, 65535)}},
		{"8000-8002:8000-8002", []Mapping{tcp("", 8000, 8000), tcp("", 8001, 8001), tcp("", 8002, 8002)}},
		{"127.0.0.1:9000-9001:80-81/udp", []Mapping{
			{HostIP: ip("127.0.0.1"), HostPort: 9000, ContainerPort: 80, Proto: "udp"},
			{HostIP: ip("127.0.0.1"), HostPort: 9001, ContainerPort: 81, Proto: "udp"}}},
		{"8000-8010:80", []Mapping{{HostPort: 8000, HostPortEnd: 8010, ContainerPort: 80, Proto: "tcp"}}},
		{"8000-8000:80", []Mapping{tcp("", 8000, 80)}},
		{"80-82", []Mapping{tcp("", 0, 80), tcp("", 0, 81), tcp("", 0, 82)}},
		{"[::1]::80-81", []Mapping{tcp("::1", 0, 80), tcp("::1", 0, 81)}},
		{"65534-65535", []Mapping{tcp("", 0, 65534), tcp("", 0, 65535)}},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err != nil {
				t.Fatalf("Parse(%q): %v", tt.in, err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("Parse(%q) = %v, want %v", tt.in, got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct{ in, want string }{
		{"", `port spec "": no container port`},
		{"8080:", `port spec "8080:": no container port`},
		{"/udp", `port spec "/udp": no container port`},
		{"80/icmp", `port spec "80/icmp": protocol "icmp" is not tcp, udp or sctp`},
		{"80/tcp/udp", `port spec "80/tcp/udp": protocol "tcp/udp" is not tcp, udp or sctp`},
		{"0", `port spec "0": container port 0 is out of range 1-65535`},
		{"8080:0", `port spec "8080:0": container port 0 is out of range 1-65535`},
		{"65536", `port spec "65536": container port 65536 is out of range 1-65535`},
		{"70000:80", `port spec "70000:80": host port 70000 is out of range 1-65535`},
		{"99999999999999999999", `port spec "99999999999999999999": container port 99999999999999999999 is out of range 1-65535`},
		{"0-10:80-90", `port spec "0-10:80-90": host port 0 is out of range 1-65535 (leave the host port empty to have one chosen)`},
		{"90-80", `port spec "90-80": container port range 90-80 is reversed`},
		{"8010-8000:80", `port spec "8010-8000:80": host port range 8010-8000 is reversed`},
		{"8000-8001:80-82", `port spec "8000-8001:80-82": host ports 8000-8001 and container ports 80-82 differ in length (2 and 3)`},
		{"8080:80-82", `port spec "8080:80-82": host ports 8080 and container ports 80-82 differ in length (1 and 3)`},
		{"0:80-82", `port spec "0:80-82": host ports 0 and container ports 80-82 differ in length (1 and 3)`},
		{"http", `port spec "http": container port "http" is not a port or range`},
		{"-80", `port spec "-80": container port "-80" is not a port or range`},
		{"80-", `port spec "80-": container port "80-" is not a port or range`},
		{"80-90-100", `port spec "80-90-100": container port "80-90-100" is not a port or range`},
		{"+80", `port spec "+80": container port "+80" is not a port or range`},
		{" 80", `port spec " 80": container port " 80" is not a port or range`},
		{"1.2.3.4:80", `port spec "1.2.3.4:80": host port "1.2.3.4" is not a port or range`},
		{"::1:8080:80", `port spec "::1:8080:80": IPv6 address must be in brackets, as in "[::1]:8080:80"`},
		{"fe80::1:8080:80/udp", `port spec "fe80::1:8080:80/udp": IPv6 address must be in brackets, as in "[fe80::1]:8080:80/udp"`},
		{":::80", `port spec ":::80": too many ":" (an IPv6 address must be in brackets, as in "[::1]:8080:80")`},
		{"1:2:3:4", `port spec "1:2:3:4": too many ":" (an IPv6 address must be in brackets, as in "[::1]:8080:80")`},
		{"[::1:8080:80", `port spec "[::1:8080:80": missing "]" after IPv6 address`},
		{"[::1]8080:80", `port spec "[::1]8080:80": want ":" after "]"`},
		{"[::1]:80", `port spec "[::1]:80": want [IP]:HOSTPORT:PORT or [IP]::PORT`},
		{"[::1]:1:2:3", `port spec "[::1]:1:2:3": want [IP]:HOSTPORT:PORT or [IP]::PORT`},
		{"[]:8080:80", `port spec "[]:8080:80": invalid IP address ""`},
		{"localhost:8080:80", `port spec "localhost:8080:80": invalid IP address "localhost"`},
		{"256.0.0.1:8080:80", `port spec "256.0.0.1:8080:80": invalid IP address "256.0.0.1"`},
		{"[fe80::1%eth0]:8080:80", `port spec "[fe80::1%eth0]:8080:80": IP address "fe80::1%eth0" has a zone, which is not supported`},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := Parse(tt.in)
			if err == nil {
				t.Fatalf("Parse(%q) = %v, want error %q", tt.in, got, tt.want)
			}
			if err.Error() != tt.want {
				t.Errorf("Parse(%q) error\n got: %s\nwant: %s", tt.in, err, tt.want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
		})
	}
}

func TestParseAll(t *testing.T) {
	ok := []struct {
		in    []string
		count int
	}{
		{[]string{"8080:80", "8081:80"}, 2},
		{[]string{"8080:80", "8080:80/udp"}, 2},
		{[]string{"127.0.0.1:8080:80", "127.0.0.2:8080:80"}, 2},
		{[]string{"0.0.0.0:8080:80", "[::]:8080:80"}, 2},
		{[]string{"[::1]:8080:80", "127.0.0.1:8080:80"}, 2},
		{[]string{"80", "80"}, 2},
		{[]string{"8000-8010:80", "8005:81"}, 2},
		{[]string{"8000-8002:8000-8002", "9000:9000/sctp"}, 4},
	}
	for _, tt := range ok {
		got, err := ParseAll(tt.in)
		if err != nil {
			t.Errorf("ParseAll(%q): %v", tt.in, err)
		} else if len(got) != tt.count {
			t.Errorf("ParseAll(%q) gave %d mappings, want %d", tt.in, len(got), tt.count)
		}
	}

	bad := []struct {
		in   []string
		want string
	}{
		{[]string{"8080:80", "8080:80"}, `port specs "8080:80" and "8080:80" both publish host port 8080/tcp on all addresses`},
		{[]string{"8080:80", "8080:81"}, `port specs "8080:80" and "8080:81" both publish host port 8080/tcp on all addresses`},
		{[]string{"8080:80", "127.0.0.1:8080:81"}, `port specs "8080:80" and "127.0.0.1:8080:81" both publish host port 8080/tcp on 127.0.0.1`},
		{[]string{"[::1]:53:53/udp", "53:53/udp"}, `port specs "[::1]:53:53/udp" and "53:53/udp" both publish host port 53/udp on ::1`},
		{[]string{"0.0.0.0:8080:80", "10.0.0.1:8080:80"}, `port specs "0.0.0.0:8080:80" and "10.0.0.1:8080:80" both publish host port 8080/tcp on 10.0.0.1`},
		{[]string{"[::]:8080:80", "[::1]:8080:80"}, `port specs "[::]:8080:80" and "[::1]:8080:80" both publish host port 8080/tcp on ::1`},
		{[]string{"8000-8010:8000-8010", "8005:80"}, `port specs "8000-8010:8000-8010" and "8005:80" both publish host port 8005/tcp on all addresses`},
		{[]string{"80", "80/bogus"}, `port spec "80/bogus": protocol "bogus" is not tcp, udp or sctp`},
	}
	for _, tt := range bad {
		_, err := ParseAll(tt.in)
		if err == nil || err.Error() != tt.want {
			t.Errorf("ParseAll(%q) error\n got: %v\nwant: %s", tt.in, err, tt.want)
		}
	}
}

func TestExposed(t *testing.T) {
	got, err := Exposed([]string{"53/udp", "80/tcp", "443", "53/tcp", "80/tcp", "9000-9001/sctp"})
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		{ContainerPort: 53, Proto: "tcp"}, {ContainerPort: 53, Proto: "udp"},
		{ContainerPort: 80, Proto: "tcp"}, {ContainerPort: 443, Proto: "tcp"},
		{ContainerPort: 9000, Proto: "sctp"}, {ContainerPort: 9001, Proto: "sctp"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Exposed = %v\nwant %v", got, want)
	}
	for in, want := range map[string]string{
		"80/icmp":  `exposed port "80/icmp": protocol "icmp" is not tcp, udp or sctp`,
		"8080:80":  `exposed port "8080:80": want PORT[/PROTO]`,
		"0/tcp":    `exposed port "0/tcp": container port 0 is out of range 1-65535`,
		"http/tcp": `exposed port "http/tcp": container port "http" is not a port or range`,
	} {
		if _, err := Exposed([]string{"80/tcp", in}); err == nil || err.Error() != want {
			t.Errorf("Exposed(%q) error\n got: %v\nwant: %s", in, err, want)
		}
	}
}

func TestString(t *testing.T) {
	for in, want := range map[string]string{
		"80":                   "80/tcp",
		"8080:80":              "8080:80/tcp",
		"127.0.0.1::80/udp":    "127.0.0.1::80/udp",
		"[::1]:8080:80":        "[::1]:8080:80/tcp",
		"[::]::80/sctp":        "[::]::80/sctp",
		"0.0.0.0:8000-8010:80": "0.0.0.0:8000-8010:80/tcp",
	} {
		ms, err := Parse(in)
		if err != nil {
			t.Fatal(err)
		}
		if got := ms[0].String(); got != want {
			t.Errorf("Parse(%q)[0].String() = %q, want %q", in, got, want)
		}
	}
}

func mustParseAll(t *testing.T, specs ...string) []Mapping {
	t.Helper()
	ms, err := ParseAll(specs)
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

func TestAllocate(t *testing.T) {
	busy := map[uint16]bool{32768: true, 32770: true}
	inUse := func(m Mapping) bool { return busy[m.HostPort] }
	ms := mustParseAll(t, "80", "32769:81", "127.0.0.1::82", "[::1]::83", "8000-8002:84", "8000:85", "80/udp")
	got, err := Allocate(ms, 32768, 32775, inUse)
	if err != nil {
		t.Fatal(err)
	}
	want := []Mapping{
		tcp("", 32771, 80), // 32768 and 32770 busy, 32769 fixed for all addresses
		tcp("", 32769, 81),
		tcp("127.0.0.1", 32772, 82), // 32771 taken for all addresses just before
		tcp("::1", 32772, 83),       // another family than 127.0.0.1
		tcp("", 8001, 84),           // 8000 fixed below
		tcp("", 8000, 85),
		{HostPort: 32769, ContainerPort: 80, Proto: "udp"}, // 32769 is fixed for tcp only
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("Allocate =\n%v\nwant\n%v", got, want)
	}
	if !ms[0].Open() {
		t.Error("Allocate changed its input")
	}

	_, err = Allocate(mustParseAll(t, "8000-8001:80", "8000:81", "8001:82"), 32768, 60999, inUse)
	if !errors.Is(err, ErrNoFreePort) || err.Error() != "publish 8000-8001:80/tcp: host port: no free port in 8000-8001" {
		t.Errorf("Allocate on a full range: %v", err)
	}
}

func TestPickEphemeral(t *testing.T) {
	busy := func(p uint16) bool { return p < 65535 }
	if p, err := PickEphemeral(busy, 65530, 65535); err != nil || p != 65535 {
		t.Errorf("PickEphemeral = %d, %v; want 65535", p, err)
	}
	all := func(uint16) bool { return true }
	if _, err := PickEphemeral(all, 65530, 65535); !errors.Is(err, ErrNoFreePort) || err.Error() != "no free port in 65530-65535" {
		t.Errorf("PickEphemeral on a full range: %v", err)
	}
	for _, r := range [][2]uint16{{0, 10}, {10, 9}} {
		if _, err := PickEphemeral(all, r[0], r[1]); err == nil || !strings.HasSuffix(err.Error(), "is invalid") {
			t.Errorf("PickEphemeral(%d, %d): %v", r[0], r[1], err)
		}
	}
}

func TestExpandFamilies(t *testing.T) {
	ms := []Mapping{tcp("", 8080, 80), tcp("127.0.0.1", 9000, 90), tcp("::", 53, 53)}
	if got, want := ExpandFamilies(ms, false), []Mapping{tcp("0.0.0.0", 8080, 80), tcp("127.0.0.1", 9000, 90), tcp("::", 53, 53)}; !reflect.DeepEqual(got, want) {
		t.Errorf("ExpandFamilies(ipv4 only) = %v, want %v", got, want)
	}
	if got, want := ExpandFamilies(ms, true), []Mapping{tcp("0.0.0.0", 8080, 80), tcp("::", 8080, 80), tcp("127.0.0.1", 9000, 90), tcp("::", 53, 53)}; !reflect.DeepEqual(got, want) {
		t.Errorf("ExpandFamilies(ipv6) = %v, want %v", got, want)
	}
}
