package e2e

import (
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

func TestEmbeddedDNS(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	up := s.ServeDNS(map[string]string{"example.test": "198.51.100.7"})
	s.MustCtnet("network", "create", "--subnet", "10.40.0.0/24", "app")
	s.MustCtnet("network", "create", "--subnet", "10.41.0.0/24", "other")
	s.MustCtnet("network", "create", "--internal", "--subnet", "10.42.0.0/24", "sealed")
	s.MustCtnet("network", "create", "--internal", "--subnet", "10.43.0.0/24", "-o", "ctnet.internal.dns_forward=true", "ajar")
	s.MustCtnet("run", "-d", "--name", "web1", "--network", "app", "--network-alias", "web", "busybox", "sleep", "600")
	s.MustCtnet("run", "-d", "--name", "web2", "--network", "app", "--network-alias", "web", "busybox", "sleep", "600")
	s.MustCtnet("run", "-d", "--name", "stranger", "--network", "other", "busybox", "sleep", "600")

	lookup := func(args ...string) string {
		t.Helper()
		out, _, _ := s.Ctnet(append([]string{"run", "--rm"}, args...)...)
		return out
	}
	if out := lookup("--network", "app", "busybox", "cat", "/etc/resolv.conf"); !strings.HasPrefix(out, "nameserver 127.0.0.11\n") {
		t.Errorf("resolv.conf on a user network:\n%s", out)
	}
	if out := lookup("--network", "app", "busybox", "nslookup", "web1"); !strings.Contains(out, "10.40.0.2") {
		t.Errorf("web1 by name:\n%s", out)
	}
	// An alias shared by two containers answers with both.
	if out := lookup("--network", "app", "busybox", "nslookup", "web"); !strings.Contains(out, "10.40.0.2") || !strings.Contains(out, "10.40.0.3") {
		t.Errorf("alias web:\n%s", out)
	}
	if out := lookup("--network", "app", "busybox", "nslookup", "10.40.0.3"); !strings.Contains(out, "web2") {
		t.Errorf("PTR of web2:\n%s", out)
	}
	// A container on another network is not resolved here (it is asked upstream, which says NXDOMAIN).
	if out := lookup("--network", "app", "busybox", "nslookup", "stranger"); strings.Contains(out, "10.41.0.") {
		t.Errorf("a name from another network resolved:\n%s", out)
	}
	// An internal network has no way out, so the resolver is none either
	// (CVE-2024-29018): its own names only, unless the network opts in.
	up.Asked() // what the lookups above asked
	if out := lookup("--network", "sealed", "busybox", "nslookup", "example.test"); strings.Contains(out, "198.51.100.7") {
		t.Errorf("an --internal network's lookup was forwarded:\n%s", out)
	}
	if asked := up.Asked(); len(asked) != 0 {
		t.Errorf("the upstream resolver was asked %q from an --internal network", asked)
	}
	// Other names go to the host's resolvers, also with a custom --dns and
	// from an internal network that opts in.
	for _, args := range [][]string{
		{"--network", "app"},
		{"--network", "ajar"},
		{"--network", "app", "--dns", sandbox.UpstreamAddr},
	} {
		if out := lookup(append(args, "busybox", "nslookup", "example.test")...); !strings.Contains(out, "198.51.100.7") {
			t.Errorf("forwarded lookup with %v:\n%s", args, out)
		}
	}
	if len(up.Asked()) == 0 {
		t.Error("the upstream resolver was never asked")
	}
	// The default network keeps Docker's behaviour: the host's resolvers, no names.
	if out := lookup("busybox", "cat", "/etc/resolv.conf"); !strings.Contains(out, "nameserver "+sandbox.UpstreamAddr) {
		t.Errorf("resolv.conf on the default network:\n%s", out)
	}
	// Nothing listens on the host's port 53.
	if out := s.Host.MustRun("ss", "-lnup"); strings.Contains(out, ":53 ") {
		t.Errorf("something listens on port 53 in the host namespace:\n%s", out)
	}
	s.MustCtnet("rm", "-f", "web1", "web2", "stranger")
}

func TestIsolation(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	s.MustCtnet("network", "create", "--subnet", "10.50.0.0/24", "a")
	s.MustCtnet("network", "create", "--subnet", "10.51.0.0/24", "b")
	s.MustCtnet("network", "create", "--subnet", "10.52.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false", "noicc")
	s.MustCtnet("network", "create", "--subnet", "10.53.0.0/24", "--internal", "inner")
	run := func(net, name string) {
		s.MustCtnet("run", "-d", "--name", name, "--network", net, "busybox", "sleep", "600")
	}
	run("a", "a1")
	run("b", "b1")
	run("noicc", "n1")
	run("noicc", "n2")
	run("inner", "i1")
	run("inner", "i2")
	ping := func(from, to string) error {
		_, _, err := s.Ctnet("exec", from, "ping", "-c1", "-W1", to)
		return err
	}
	mustReach := func(from, to string) {
		t.Helper()
		if err := ping(from, to); err != nil {
			t.Errorf("%s cannot reach %s", from, to)
		}
	}
	mustNot := func(from, to string) {
		t.Helper()
		if err := ping(from, to); err == nil {
			t.Errorf("%s reaches %s", from, to)
		}
	}
	mustNot("a1", "10.51.0.2") // networks are isolated, both ways
	mustNot("b1", "10.50.0.2")
	mustNot("n1", "10.52.0.3") // no ICC
	mustReach("n1", "10.52.0.1")
	mustReach("n1", sandbox.UpstreamAddr)
	mustReach("i1", "10.53.0.3") // internal: among themselves only
	mustNot("i1", sandbox.UpstreamAddr)
	if out := s.MustCtnet("exec", "i1", "ip", "route"); strings.Contains(out, "default") {
		t.Errorf("internal network has a default route:\n%s", out)
	}
	mustReach("a1", sandbox.UpstreamAddr)
	s.MustCtnet("rm", "-f", "a1", "b1", "n1", "n2", "i1", "i2")
}

func TestLiveConnectDisconnect(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	s.ServeDNS(nil)
	s.MustCtnet("network", "create", "--subnet", "10.60.0.0/24", "front")
	s.MustCtnet("network", "create", "--subnet", "10.61.0.0/24", "back")
	s.MustCtnet("run", "-d", "--name", "app", "--network", "front", "busybox", "sleep", "600")
	s.MustCtnet("run", "-d", "--name", "db", "--network", "back", "busybox", "sleep", "600")
	s.MustCtnet("network", "connect", "--ip", "10.61.0.50", "--alias", "api", "back", "app")
	if out := s.MustCtnet("exec", "app", "ip", "-o", "-4", "addr", "show", "eth1"); !strings.Contains(out, "10.61.0.50/24") {
		t.Errorf("eth1 after connect: %s", out)
	}
	if out, _, _ := s.Ctnet("exec", "app", "nslookup", "db"); !strings.Contains(out, "10.61.0.2") {
		t.Errorf("db from app after connect:\n%s", out)
	}
	if out, _, _ := s.Ctnet("exec", "db", "nslookup", "api"); !strings.Contains(out, "10.61.0.50") {
		t.Errorf("alias api from db:\n%s", out)
	}
	if out := s.MustCtnet("exec", "app", "cat", "/etc/hosts"); !strings.Contains(out, "10.61.0.50") {
		t.Errorf("/etc/hosts after connect:\n%s", out)
	}
	// The default route goes where Docker puts it: "back" sorts before
	// "front"; a later network sorting after both leaves it, one with a
	// higher --gw-priority takes it; disconnecting the holder hands it on.
	defaultVia := func(when, want string) {
		t.Helper()
		out := s.MustCtnet("exec", "app", "ip", "route") // busybox's ip has no "show default"
		var defaults []string
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "default ") {
				defaults = append(defaults, l)
			}
		}
		if len(defaults) != 1 || !strings.HasPrefix(defaults[0], "default via "+want+" ") {
			t.Errorf("default routes %s: %q, want one via %s", when, defaults, want)
		}
	}
	defaultVia("after connecting back", "10.61.0.1")
	s.MustCtnet("network", "create", "--subnet", "10.62.0.0/24", "zoo")
	s.MustCtnet("network", "connect", "zoo", "app")
	defaultVia("after connecting zoo", "10.61.0.1")
	s.MustCtnet("network", "create", "--subnet", "10.63.0.0/24", "zpriority")
	s.MustCtnet("network", "connect", "--gw-priority", "10", "zpriority", "app")
	defaultVia("after connecting zpriority with --gw-priority 10", "10.63.0.1")
	s.MustCtnet("network", "disconnect", "zpriority", "app")
	defaultVia("after disconnecting zpriority", "10.61.0.1")
	s.MustCtnet("network", "disconnect", "zoo", "app")
	s.MustCtnet("network", "disconnect", "back", "app")
	defaultVia("after disconnecting back", "10.60.0.1")
	if out := s.MustCtnet("exec", "app", "ip", "-o", "link"); strings.Contains(out, "eth1") {
		t.Errorf("eth1 still there:\n%s", out)
	}
	if out := s.MustCtnet("ps", "--format", "{{.Names}}"); !strings.Contains(out, "app") {
		t.Errorf("app stopped: %s", out)
	}
	if _, _, err := s.Ctnet("exec", "app", "ping", "-c1", "-W1", "10.60.0.1"); err != nil {
		t.Errorf("app lost its first network: %v", err)
	}
	s.MustCtnet("rm", "-f", "app", "db")
	s.MustCtnet("network", "prune", "-f")
	if out := s.MustCtnet("network", "ls", "--format", "{{.Name}}"); out != "bridge\nhost\nnone\n" {
		t.Errorf("after prune: %q", out)
	}
}

func TestIPv6DualStack(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	s.MustCtnet("network", "create", "--ipv6", "--subnet", "10.70.0.0/24", "--subnet", "fd00:70::/64", "dual")
	s.MustCtnet("run", "-d", "--name", "d1", "--network", "dual", "busybox", "sleep", "600")
	s.MustCtnet("run", "-d", "--name", "d2", "--network", "dual", "--ip6", "fd00:70::99", "busybox", "sleep", "600")
	if out := s.MustCtnet("exec", "d1", "ip", "-6", "-o", "addr", "show", "eth0"); !strings.Contains(out, "fd00:70::2/64") {
		t.Errorf("d1 IPv6: %s", out)
	}
	if out := s.MustCtnet("exec", "d1", "ip", "-6", "route"); !strings.Contains(out, "default via fd00:70::1") {
		t.Errorf("d1 IPv6 routes: %s", out)
	}
	for _, to := range []string{"fd00:70::99", sandbox.Upstream6} {
		if _, e, err := s.Ctnet("exec", "d1", "ping", "-6", "-c1", "-W2", to); err != nil {
			t.Errorf("d1 cannot reach %s over IPv6: %s", to, e)
		}
	}
	// The embedded DNS answers AAAA too.
	if out, _, _ := s.Ctnet("exec", "d1", "nslookup", "-type=AAAA", "d2"); !strings.Contains(out, "fd00:70::99") {
		t.Errorf("AAAA of d2:\n%s", out)
	}
	if out := s.MustCtnet("inspect", "-f", "{{.NetworkSettings.GlobalIPv6Address}}", "d2"); strings.TrimSpace(out) != "fd00:70::99" {
		t.Errorf("inspect d2 GlobalIPv6Address = %s", out)
	}
	s.MustCtnet("rm", "-f", "d1", "d2")
}

func TestNetworkOptionsAndStaticAddresses(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	s.MustCtnet("network", "create", "--subnet", "10.80.0.0/24", "--gateway", "10.80.0.254", "--ip-range", "10.80.0.128/25",
		"--aux-address", "router=10.80.0.129", "--label", "team=net", "-o", "com.docker.network.bridge.name=brx",
		"-o", "com.docker.network.driver.mtu=1300", "-o", "com.docker.network.bridge.enable_ip_masquerade=false", "opts")
	got := s.MustCtnet("network", "inspect", "-f", "{{json .IPAM.Config}} {{json .Labels}} {{index .Options \"com.docker.network.bridge.name\"}}", "opts")
	want := `[{"Subnet":"10.80.0.0/24","Gateway":"10.80.0.254","IPRange":"10.80.0.128/25","AuxiliaryAddresses":{"router":"10.80.0.129"}}] {"team":"net"} brx` + "\n"
	if got != want {
		t.Errorf("inspect:\n%s\nwant:\n%s", got, want)
	}
	if out := s.MustCtnet("network", "ls", "--filter", "label=team=net", "-q"); len(strings.Fields(out)) != 1 {
		t.Errorf("ls --filter label: %q", out)
	}
	// Allocation starts in the ip-range and skips the aux address.
	out := s.MustCtnet("run", "--rm", "--network", "opts", "--mac-address", "02:00:00:00:00:42", "busybox", "ip", "-o", "link", "show", "eth0")
	if !strings.Contains(out, "mtu 1300") || !strings.Contains(out, "02:00:00:00:00:42") {
		t.Errorf("eth0 on opts: %s", out)
	}
	if out := s.MustCtnet("run", "--rm", "--network", "opts", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "10.80.0.128/24") && !strings.Contains(out, "10.80.0.130/24") {
		t.Errorf("address outside the ip-range or on the aux address: %s", out)
	}
	// Without masquerade the outside sees the container's own address: no
	// answer comes back until the outside has a route to the subnet.
	s.MustCtnet("run", "-d", "--name", "c", "--network", "opts", "--ip", "10.80.0.10", "busybox", "sleep", "600")
	if _, _, err := s.Ctnet("exec", "c", "ping", "-c1", "-W1", sandbox.UpstreamAddr); err == nil {
		t.Error("ping answered without a route back: the traffic was masqueraded")
	}
	s.Upstream.MustRun("ip", "route", "add", "10.80.0.0/24", "via", sandbox.HostAddr)
	if out := s.MustCtnet("exec", "c", "ping", "-c1", "-W2", sandbox.UpstreamAddr); !strings.Contains(out, "1 packets received") {
		t.Errorf("unmasqueraded ping: %s", out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--ip", "10.80.0.10"}, "already in use by c"},
		{[]string{"--ip", "10.81.0.10"}, "outside"},
		{[]string{"--ip", "10.80.0.254"}, "gateway"},
		{[]string{"--ip", "10.80.0.255"}, "broadcast"},
		{[]string{"--ip", "10.80.0.0"}, "network address"},
		{[]string{"--mac-address", "01:00:00:00:00:01"}, "unicast"},
	} {
		before := s.MustCtnet("ps", "-aq")
		_, e, err := s.Ctnet(append(append([]string{"run", "--rm", "--network", "opts"}, c.args...), "busybox", "true")...)
		if err == nil || !strings.Contains(e, c.want) {
			t.Errorf("run %v: err=%v %s, want %q", c.args, err, e, c.want)
		}
		if after := s.MustCtnet("ps", "-aq"); after != before {
			t.Errorf("run %v left a container behind", c.args)
		}
	}
	s.MustCtnet("rm", "-f", "c")
}

func TestSubnetPoolAndVPNRoutes(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "ls")
	// A VPN that captures everything with a 0/1 + 128/1 split leaves no free pool subnet.
	s.Host.MustRun("ip", "route", "add", "0.0.0.0/1", "via", sandbox.UpstreamAddr)
	s.Host.MustRun("ip", "route", "add", "128.0.0.0/1", "via", sandbox.UpstreamAddr)
	_, e, err := s.Ctnet("network", "create", "vpn")
	if err == nil || !strings.Contains(e, "no free subnet") || !strings.Contains(e, "--subnet") {
		t.Errorf("create under a VPN split: %v %s", err, e)
	}
	s.Host.MustRun("ip", "route", "del", "128.0.0.0/1")
	// A more specific route inside the next pool entry is skipped too.
	s.Host.MustRun("ip", "route", "add", "172.18.3.0/24", "via", sandbox.UpstreamAddr)
	s.MustCtnet("network", "create", "next")
	if got := s.MustCtnet("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "next"); got != "172.19.0.0/16\n" {
		t.Errorf("next subnet %q, want 172.19.0.0/16", got)
	}
}

// The resolver killed: the monitors of the containers that use it start it
// again at once, and `system reconcile` would too.
func TestResolverRestarted(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	s.MustCtnet("network", "create", "--subnet", "10.44.0.0/24", "named")
	s.MustCtnet("run", "-d", "--name", "srv", "--network", "named", "busybox", "sleep", "600")
	resolver := func() string {
		out, _ := s.Host.Run("sh", "-c", "ps -eo pid=,args= | grep -F -- '--run-root "+s.RunRoot+" ' | grep -F 'dns-serve' | grep -v grep | awk '{print $1}'")
		return strings.TrimSpace(out)
	}
	first := resolver()
	if first == "" || strings.Contains(first, "\n") {
		t.Fatalf("resolver processes: %q", first)
	}
	s.Host.MustRun("kill", "-9", first)
	waitFor(t, func() bool { r := resolver(); return r != "" && r != first && !strings.Contains(r, "\n") }, "the resolver to be started again")
	if out, _, _ := s.Ctnet("exec", "srv", "nslookup", "srv", "127.0.0.11"); !strings.Contains(out, "10.44.0.2") {
		t.Errorf("srv by name after the resolver was killed:\n%s", out)
	}
}
