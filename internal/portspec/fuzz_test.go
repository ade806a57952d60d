package portspec

import (
	"reflect"
	"strings"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		"80", "8080:80", "127.0.0.1:8080:80", "127.0.0.1::80", "[::1]:8080:80", "[::]:8080:80",
		"8080:80/udp", "9000:9000/sctp", "8000-8010:8000-8010", "8000-8010:80", "80-82", "0.0.0.0:8080:80",
		"::1:8080:80", "[fe80::1%eth0]:1:2", "[::ffff:1.2.3.4]::5/UDP", "0:80", "65535-65535:1-1", "80/",
		"1-65535", "[", "[]:", ":::", "/", "-", "9-0",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		ms, err := Parse(s)
		if err != nil {
			if ms != nil || strings.Contains(err.Error(), "\n") || !strings.HasPrefix(err.Error(), "port spec ") {
				t.Fatalf("Parse(%q) = %v, %q", s, ms, err)
			}
			return
		}
		if len(ms) == 0 {
			t.Fatalf("Parse(%q) accepted with no mapping", s)
		}
		for _, m := range ms {
			if m.ContainerPort == 0 || !validProto(m.Proto) || m.HostIP.Zone() != "" || m.HostIP.Is4In6() ||
				(m.HostPortEnd != 0 && (m.HostPort == 0 || m.HostPortEnd <= m.HostPort)) {
				t.Fatalf("Parse(%q) gave invalid %#v", s, m)
			}
			back, err := Parse(m.String())
			if err != nil || !reflect.DeepEqual(back, []Mapping{m}) {
				t.Fatalf("Parse(%q) gave %#v; Parse(%q) = %v, %v", s, m, m.String(), back, err)
			}
		}
		// The formatters take anything Parse gives.
		_ = FormatPort(ExpandFamilies(ms, true))
		_ = DisplayPorts(ExpandFamilies(ms, true))
	})
}
