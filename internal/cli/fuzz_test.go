package cli

import (
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/ctnet/ctnet/internal/network"
)

// The parsers of `network create`, `network ls|prune --filter` and `kill -s`
// see whatever a user types. A fuzz input holds a repeated flag's values
// separated by NUL, which no argv string can contain.

func splitArgs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// checkOneLine fails unless err reads as one line (the CLI prints it after
// "Error: ") and names what (the flag, the bad value) a user must fix.
func checkOneLine(t *testing.T, err error, names string) {
	t.Helper()
	if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || !strings.Contains(msg, names) {
		t.Fatalf("error %q: want one line naming %q", msg, names)
	}
}

func FuzzKeyValues(f *testing.F) {
	for _, s := range []string{
		"", "a=b", "com.docker.network.driver.mtu=1400\x00com.docker.network.bridge.name=br0",
		"a=1\x00a=2", "=v", "novalue", "k=", "k==v", "k=v=w", "a\nb=c", "k=\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		kvs := splitArgs(in)
		m, err := keyValues("--opt", kvs)
		if err != nil {
			checkOneLine(t, err, "--opt")
			for _, kv := range kvs {
				if k, _, ok := strings.Cut(kv, "="); !ok || k == "" {
					return // rightly refused
				}
			}
			t.Fatalf("keyValues(%q) refused well-formed input: %v", kvs, err)
		}
		want := map[string]string{}
		for _, kv := range kvs {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				t.Fatalf("keyValues(%q) accepted %q", kvs, kv)
			}
			want[k] = v // the last one wins, as in Docker
		}
		if len(m) != len(want) {
			t.Fatalf("keyValues(%q) = %q, want %q", kvs, m, want)
		}
		for k, v := range want {
			if m[k] != v {
				t.Fatalf("keyValues(%q)[%q] = %q, want %q", kvs, k, m[k], v)
			}
		}
	})
}

func FuzzSubnetSpecs(f *testing.F) {
	for _, s := range [][4]string{
		{"", "", "", ""},
		{"10.1.0.0/24", "10.1.0.254", "10.1.0.128/25", "a=10.1.0.5"},
		{"10.1.0.0/24\x00fd00:1::/64", "10.1.0.1\x00fd00:1::1", "", "a=10.1.0.5\x00b=fd00:1::5"},
		{"", "10.1.0.1", "", ""},
		{"10.1.0.0/24", "", "10.1.0.0/25\x0010.1.0.128/25", ""},
		{"10.1.0.0/24", "", "", "a=10.2.0.5"},
		{"10.1.0.0/24", "", "", "noequals"},
		{"10.1.0.0/24", "", "", "=10.1.0.5"},
		{"banana", "", "", "a=banana"},
		{"10.1.0.0/24", "", "", "a=10.1.0.5\x00a=10.1.0.6"},
	} {
		f.Add(s[0], s[1], s[2], s[3])
	}
	f.Fuzz(func(t *testing.T, subnets, gateways, ranges, aux string) {
		sn, gw, rg, ax := splitArgs(subnets), splitArgs(gateways), splitArgs(ranges), splitArgs(aux)
		out, err := subnetSpecs(sn, gw, rg, ax)
		if err != nil {
			checkOneLine(t, err, "")
			if !strings.Contains(err.Error(), "subnet") && !strings.Contains(err.Error(), "gateway") &&
				!strings.Contains(err.Error(), "ip-range") && !strings.Contains(err.Error(), "aux") {
				t.Fatalf("error %q names no flag", err)
			}
			return
		}
		if len(out) != len(sn) {
			t.Fatalf("subnetSpecs(%q, %q, %q, %q): %d specs", sn, gw, rg, ax, len(out))
		}
		// Docker pairs by containment: every gateway, range and aux address
		// lands in the --subnet that holds it.
		holds := func(ip string) int {
			for i := range out {
				if containsAddr(out[i].Subnet, ip) {
					return i
				}
			}
			return -1
		}
		for _, g := range gw {
			if i := holds(g); i < 0 || out[i].Gateway != g {
				t.Fatalf("--gateway %q not on the subnet that holds it: %+v", g, out)
			}
		}
		for _, kv := range ax {
			name, ip, ok := strings.Cut(kv, "=")
			if !ok {
				t.Fatalf("subnetSpecs accepted --aux-address %q", kv)
			}
			name, ip = strings.TrimSpace(name), strings.TrimSpace(ip)
			if i := holds(ip); i < 0 || out[i].AuxAddresses[name] == "" {
				t.Fatalf("--aux-address %q not on the subnet that holds it: %+v", kv, out)
			}
		}
	})
}

var filterSamples = []network.NetworkInfo{
	{Network: network.Network{Name: "bridge", ID: "0123456789abcdef", Driver: "bridge"}},
	{Network: network.Network{Name: "web", ID: "fedcba9876543210", Driver: "bridge", Labels: map[string]string{"env": "prod", "k": ""}}},
	{Network: network.Network{Name: "", ID: "", Driver: ""}},
}

func FuzzNetworkFilter(f *testing.F) {
	for _, s := range []string{
		"", "name=web", "name=web\x00name=bridge", "id=0123", "driver=bridge", "label=env", "label=env=prod",
		"type=custom", "type=builtin", "type=weird", "scope=local", "colour=red", "noequals", "=", "name=\n",
		"name=web\x00driver=bridge\x00label=k=",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		filters := splitArgs(in)
		match, err := networkFilter(filters)
		if err != nil {
			checkOneLine(t, err, "--filter")
			return
		}
		for _, fl := range filters {
			k, v, ok := strings.Cut(fl, "=")
			known := map[string]bool{"name": true, "id": true, "driver": true, "label": true, "type": true, "scope": true}
			if !ok || !known[k] || (k == "type" && v != "custom" && v != "builtin") {
				t.Fatalf("networkFilter accepted %q", fl)
			}
		}
		matched := 0
		for _, n := range filterSamples {
			if match(n) {
				matched++
			}
		}
		if len(filters) == 0 && matched != len(filterSamples) {
			t.Fatalf("no filter matched %d of %d networks", matched, len(filterSamples))
		}
	})
}

func TestNetworkFilter(t *testing.T) {
	for _, tc := range []struct {
		filters []string
		want    string // names of filterSamples that match, comma-separated
	}{
		{nil, "bridge,web,"},
		{[]string{"name=we"}, "web"},
		{[]string{"name=web", "name=bridge"}, "bridge,web"},
		{[]string{"id=0123"}, "bridge"},
		{[]string{"label=env"}, "web"},
		{[]string{"label=env=prod"}, "web"},
		{[]string{"label=env=dev"}, ""},
		{[]string{"label=k="}, "web"},
		{[]string{"type=builtin"}, "bridge"},
		{[]string{"type=custom", "driver=bridge"}, "web"},
		{[]string{"scope=global"}, ""},
	} {
		match, err := networkFilter(tc.filters)
		if err != nil {
			t.Fatalf("networkFilter(%q): %v", tc.filters, err)
		}
		var got []string
		for _, n := range filterSamples {
			if match(n) {
				got = append(got, n.Name)
			}
		}
		if strings.Join(got, ",") != tc.want {
			t.Errorf("networkFilter(%q) matched %q, want %q", tc.filters, strings.Join(got, ","), tc.want)
		}
	}
}

func FuzzParseSignal(f *testing.F) {
	for _, s := range []string{"KILL", "kill", "SIGTERM", "sigint", "9", "15", "64", "65", "0", "-1", "BADSIG", "", "SIG", "0x9", "1e1"} {
		f.Add(s)
	}
	names := map[string]syscall.Signal{
		"KILL": syscall.SIGKILL, "TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP,
		"QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1, "USR2": syscall.SIGUSR2, "STOP": syscall.SIGSTOP, "CONT": syscall.SIGCONT,
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := parseSignal(s)
		// What `kill -s` means: a signal number 1-64 written in decimal
		// digits, or a name with or without SIG in any case, and nothing else.
		var want syscall.Signal
		if n, nerr := strconv.ParseUint(s, 10, 8); nerr == nil && n >= 1 && n <= 64 {
			want = syscall.Signal(n)
		} else {
			want = names[strings.TrimPrefix(strings.ToUpper(s), "SIG")]
		}
		if want == 0 {
			if err == nil {
				t.Fatalf("parseSignal(%q) = %d, want an error", s, got)
			}
			checkOneLine(t, err, strconv.Quote(s))
			return
		}
		if err != nil || got != want {
			t.Fatalf("parseSignal(%q) = %d, %v; want %d", s, got, err, want)
		}
	})
}
