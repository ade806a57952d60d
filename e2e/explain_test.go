package e2e

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// TestExplainMatchesWhatCtnetDoes runs each command with ctnet in one sandbox
// and, in a second sandbox in the same state, runs the commands `ctnet
// explain` prints for it; then the two kernels must be equal up to generated
// names (links, addresses, routes, bridge port flags, sysctls, nft elements,
// and the namespace's side).
func TestExplainMatchesWhatCtnetDoes(t *testing.T) {
	t.Parallel()
	icc := "com.docker.network.bridge.enable_icc=false"
	for _, c := range []struct {
		name  string
		setup [][]string // ctnet commands run in both sandboxes first; NS is the sandbox's spare namespace
		cmd   []string
	}{
		{"network create", nil, []string{"network", "create", "--subnet", "10.10.0.0/24", "-o", icc, "app"}},
		{"network create internal dual-stack", nil, []string{"network", "create", "--internal", "--ipv6", "--subnet", "10.20.0.0/24",
			"--subnet", "fd00:20::/64", "--gateway", "10.20.0.254", "back"}},
		{"network create nat-unprotected", nil, []string{"network", "create", "--subnet", "10.30.0.0/24",
			"-o", "com.docker.network.bridge.gateway_mode_ipv4=nat-unprotected",
			"-o", "com.docker.network.driver.mtu=1300", "-o", "com.docker.network.bridge.name=open0", "open"}},
		{"network connect", [][]string{{"network", "create", "--subnet", "10.10.0.0/24", "-o", icc, "app"}},
			[]string{"network", "connect", "app", "--netns", "NS", "--alias", "x"}},
		{"network connect with address and MAC", nil,
			[]string{"network", "connect", "bridge", "--netns", "NS", "--ip", "172.17.0.50", "--mac-address", "02:aa:bb:cc:dd:ee", "--ifname", "net1"}},
		{"network connect dual-stack", [][]string{{"network", "create", "--ipv6", "--subnet", "10.20.0.0/24", "--subnet", "fd00:20::/64", "six"}},
			[]string{"network", "connect", "six", "--netns", "NS"}},
		{"network disconnect", [][]string{{"network", "connect", "bridge", "--netns", "NS"}},
			[]string{"network", "disconnect", "bridge", "--netns", "NS"}},
		{"network rm", [][]string{{"network", "create", "--subnet", "10.10.0.0/24", "app"}},
			[]string{"network", "rm", "app"}},
		{"run with published ports", nil, []string{"run", "-d", "--name", "web", "-p", "8080:80", "-p", "127.0.0.1:8081:80/udp", "host", "sleep", "600"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Parallel()
			did, told := sandbox.New(t), sandbox.New(t)
			nsOf := map[*sandbox.Sandbox]*sandbox.NS{did: did.Netns(), told: told.Netns()}
			sub := func(s *sandbox.Sandbox, args []string) []string {
				out := slices.Clone(args)
				for i, a := range out {
					if a == "NS" {
						out[i] = nsOf[s].NetPath()
					}
				}
				return out
			}
			for _, s := range []*sandbox.Sandbox{did, told} {
				s.MustCtnet("network", "ls")
				for _, args := range c.setup {
					s.MustCtnet(sub(s, args)...)
				}
			}
			if got, want := kernelOf(t, told, nsOf[told].NetPath()), kernelOf(t, did, nsOf[did].NetPath()); got != want {
				t.Fatalf("the sandboxes differ before the command:\n%s", diffLines(want, got))
			}

			did.MustCtnet(sub(did, c.cmd)...)

			before := told.MustCtnet("topology", "--format", "json")
			script := told.MustCtnet(append([]string{"explain"}, sub(told, c.cmd)...)...)
			if after := told.MustCtnet("topology", "--format", "json"); after != before {
				t.Errorf("explain changed the host:\n%s", diffLines(before, after))
			}
			if !strings.HasPrefix(script, "# ctnet "+c.cmd[0]) {
				t.Errorf("explain:\n%s", script)
			}
			sh := told.Host.Command("sh", "-ex")
			sh.Stdin = strings.NewReader(script)
			if out, err := sh.CombinedOutput(); err != nil {
				t.Fatalf("the explained commands failed: %v\n%s\nscript:\n%s", err, out, script)
			}
			// A command of its own namespace (run): the pin it made.
			nsDid, nsTold := nsOf[did].NetPath(), nsOf[told].NetPath()
			if c.cmd[0] == "run" {
				nsDid, nsTold = pinOf(t, did), pinOf(t, told)
			}
			want, got := kernelOf(t, did, nsDid), kernelOf(t, told, nsTold)
			if got != want {
				t.Errorf("ctnet made (-) and the explained commands made (+) differ:\n%s\nscript:\n%s", diffLines(want, got), script)
			}
		})
	}
}

// pinOf is the one namespace pin under the sandbox's run root.
func pinOf(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	out := strings.Fields(s.Host.MustRun("sh", "-c", "ls -d "+filepath.Join(s.RunRoot, "netns")+"/*"))
	if len(out) != 1 {
		t.Fatalf("namespace pins: %q", out)
	}
	return out[0]
}

var normalisers = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`veth[0-9a-f]{7}`), "vethX"},
	{regexp.MustCompile(`br-[0-9a-f]{12}`), "br-X"},
	{regexp.MustCompile(`(?m)^\d+: `), ""},
	{regexp.MustCompile(`@if\d+`), "@if"},
	{regexp.MustCompile(`link-netns(id|) \S+`), ""},
	{regexp.MustCompile(`[0-9a-f]{64}`), "ID"},
	// An IPv4-only network's private IPv6 /64 is derived from its id.
	{regexp.MustCompile(`\bfd[0-9a-f]{2}(:[0-9a-f]{1,4}){3}::`), "fdPRIVATE::"},
	{regexp.MustCompile(`/proc/\d+/ns/net`), "NS"},
	{regexp.MustCompile(`(valid|preferred)_lft \S+`), ""},
	// Carrier follows the ports with a delay of the kernel's (linkwatch).
	// So does a bridge port's state (disabled until its carrier is up).
	{regexp.MustCompile(`NO-CARRIER,|,LOWER_UP| state (UP|DOWN|LOWERLAYERDOWN|UNKNOWN|forwarding|disabled|blocking|listening|learning)| linkdown`), ""},
	{regexp.MustCompile(`[ \t]+`), " "},
}

var macRE = regexp.MustCompile(`\b[0-9a-f]{2}(:[0-9a-f]{2}){5}\b`)

func normalise(s string) string {
	for _, n := range normalisers {
		s = n.re.ReplaceAllString(s, n.with)
	}
	// MACs ctnet gives containers stay; random ones (host ends) and those
	// derived from generated bridge names do not.
	s = macRE.ReplaceAllStringFunc(s, func(m string) string {
		if strings.HasPrefix(m, "02:42:") || m == "02:aa:bb:cc:dd:ee" || m == "ff:ff:ff:ff:ff:ff" || m == "00:00:00:00:00:00" {
			return m
		}
		return "MAC"
	})
	lines := strings.Split(s, "\n")
	var out []string
	for _, l := range lines {
		if l = strings.TrimSpace(l); l != "" {
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

// kernelOf is what the kernel of a sandbox holds that ctnet makes, and the
// side of namespace ns.
func kernelOf(t *testing.T, s *sandbox.Sandbox, ns string) string {
	t.Helper()
	h := s.Host
	var b strings.Builder
	section := func(name, out string) { fmt.Fprintf(&b, "== %s\n%s\n", name, normalise(out)) }
	section("host links", h.MustRun("ip", "-o", "link"))
	addrs := h.MustRun("ip", "-o", "addr")
	var keep []string
	for _, l := range strings.Split(addrs, "\n") {
		// Link-local addresses of the host's ends follow their random MACs.
		if !strings.Contains(l, "inet6 fe80::") {
			keep = append(keep, l)
		}
	}
	section("host addresses", strings.Join(keep, "\n"))
	section("host routes", h.MustRun("ip", "route")+h.MustRun("ip", "-6", "route"))
	section("bridge ports", h.MustRun("bridge", "-d", "link"))
	sysctls := `for f in /proc/sys/net/ipv4/ip_forward /proc/sys/net/ipv6/conf/all/forwarding /proc/sys/net/ipv4/conf/*/route_localnet /proc/sys/net/ipv6/conf/*/accept_ra /proc/sys/net/ipv6/conf/*/disable_ipv6 /proc/sys/net/ipv6/conf/*/accept_dad; do echo "$f $(cat $f)"; done`
	section("host sysctls", h.MustRun("sh", "-c", sysctls))
	section("nft elements", nftElements(t, h))
	in := func(args ...string) string {
		out, err := h.Command("nsenter", append([]string{"--net=" + ns}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("in %s: %v: %v\n%s", ns, args, err, out)
		}
		return string(out)
	}
	section("namespace links", in("ip", "-o", "link"))
	section("namespace addresses", in("ip", "-o", "addr"))
	section("namespace routes", in("ip", "route")+in("ip", "-6", "route"))
	section("namespace sysctls", in("sh", "-c", strings.ReplaceAll(sysctls, "/proc/sys/net/ipv4/ip_forward ", "")))
	return b.String()
}

// nftElements lists the elements of ctnet's sets, one a line.
func nftElements(t *testing.T, h *sandbox.NS) string {
	t.Helper()
	var lines []string
	for _, fam := range []string{"inet", "bridge"} {
		out := h.MustRun("nft", "-j", "list", "table", fam, "ctnet")
		var doc struct {
			Nftables []map[string]json.RawMessage `json:"nftables"`
		}
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("nft -j: %v", err)
		}
		for _, o := range doc.Nftables {
			for _, kind := range []string{"set", "map"} {
				raw, ok := o[kind]
				if !ok {
					continue
				}
				var s struct {
					Name string            `json:"name"`
					Elem []json.RawMessage `json:"elem"`
				}
				if err := json.Unmarshal(raw, &s); err != nil {
					t.Fatal(err)
				}
				lines = append(lines, fmt.Sprintf("%s %s (%d)", fam, s.Name, len(s.Elem)))
				for _, e := range s.Elem {
					lines = append(lines, fam+" "+s.Name+" "+string(e))
				}
			}
		}
	}
	return strings.Join(lines, "\n")
}

func TestExplainChangesNothing(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	ns := s.Netns()
	// A host ctnet never set up: the explanation says what the first command
	// would make, and nothing is made.
	out := s.MustCtnet("explain", "network", "connect", "bridge", "--netns", ns.NetPath())
	for _, want := range []string{"nftables tables inet ctnet and bridge ctnet", "ip link add ctnet0", "nft add element inet ctnet bridges '{ \"ctnet0\" }'",
		"netns " + ns.NetPath(), "ip addr add 172.17.0.2/16 brd + dev eth0"} {
		if !strings.Contains(out, want) {
			t.Errorf("explain on a new host lacks %q:\n%s", want, out)
		}
	}
	if o, err := s.Host.Run("ip", "link", "show", "ctnet0"); err == nil {
		t.Errorf("explain made ctnet0:\n%s", o)
	}
	if o := s.Host.MustRun("nft", "list", "ruleset"); strings.Contains(o, "ctnet") {
		t.Errorf("explain made ctnet's tables:\n%s", o)
	}
	if o := ns.MustRun("ip", "-o", "link"); strings.Contains(o, "eth0") {
		t.Errorf("explain touched the namespace:\n%s", o)
	}
	s.MustCtnet("network", "ls")
	before := s.MustCtnet("topology", "--format", "json")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"explain"}, "requires at least 1 argument"},
		{[]string{"explain", "bridge", "show"}, `not "bridge show"`},
		{[]string{"explain", "network", "create", "--subnet", "10.99.0.0/33", "x"}, "10.99.0.0/33"},
		{[]string{"explain", "network", "create", "--subnet", "172.17.5.0/24", "x"}, "overlaps"},
		{[]string{"explain", "network", "create", "bridge"}, "already exists"},
		{[]string{"explain", "network", "connect", "nosuch", "--netns", ns.NetPath()}, `No such network: nosuch`},
		{[]string{"explain", "network", "connect", "bridge", "--netns", "/proc/1/ns/nosuch"}, "nosuch"},
		{[]string{"explain", "network", "connect", "bridge", "--netns", ns.NetPath(), "--ip", "10.1.1.1"}, "10.1.1.1"},
		{[]string{"explain", "network", "connect", "bridge", "nosuch"}, "nosuch"},
		{[]string{"explain", "network", "create", "--bogus", "x"}, "--bogus"},
		{[]string{"explain", "run", "-p", "70000:80", "host", "true"}, "70000"},
		{[]string{"explain", "run", "--network", "nosuch", "host", "true"}, "nosuch"},
	} {
		_, e, err := s.Ctnet(c.args...)
		if err == nil || !strings.Contains(e, c.want) || strings.Count(strings.TrimSpace(e), "\n") > 0 {
			t.Errorf("%v: %v %q, want one line with %q", c.args, err, e, c.want)
		}
	}
	if out := s.MustCtnet("explain", "run", "--network", "host", "host", "true"); !strings.Contains(out, "--network host") {
		t.Errorf("explain run --network host:\n%s", out)
	}
	if after := s.MustCtnet("topology", "--format", "json"); after != before {
		t.Errorf("explain changed the host:\n%s", diffLines(before, after))
	}
}
