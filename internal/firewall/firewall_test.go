package firewall

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strings"
	"testing"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

var update = flag.Bool("update", false, "rewrite golden files in testdata/")

// sandbox is a fresh network namespace that the calling goroutine's thread
// sits in for the whole test; the machine's own namespace is never touched.
type sandbox struct {
	ns  netns.NsHandle
	tid int
}

func newSandbox(tb testing.TB) *sandbox {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("needs root to create network namespaces and program nftables")
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		tb.Fatalf("get current netns: %v", err)
	}
	ns, err := netns.New()
	if err != nil {
		orig.Close()
		runtime.UnlockOSThread()
		tb.Fatalf("new netns: %v", err)
	}
	tb.Cleanup(func() {
		ns.Close()
		if err := netns.Set(orig); err != nil {
			// Leave the thread locked: Go kills it when the goroutine ends.
			tb.Errorf("restore netns: %v", err)
			return
		}
		orig.Close()
		runtime.UnlockOSThread()
	})
	return &sandbox{ns: ns, tid: unix.Gettid()}
}

func (s *sandbox) firewall(tb testing.TB) *Firewall {
	tb.Helper()
	f, err := New(WithNetNS(int(s.ns)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { f.Close() })
	return f
}

// firewallWithTable is firewall with the empty table made, as ctnet's first
// reconcile makes it: element changes need the table.
func (s *sandbox) firewallWithTable(tb testing.TB) *Firewall {
	tb.Helper()
	f := s.firewall(tb)
	if _, err := f.Ensure(nil, nil, nil); err != nil {
		tb.Fatal(err)
	}
	return f
}

// nft runs the nft binary inside the sandbox (reading only, in tests).
func (s *sandbox) nft(tb testing.TB, args ...string) string {
	tb.Helper()
	nsPath := fmt.Sprintf("--net=/proc/%d/task/%d/ns/net", os.Getpid(), s.tid)
	out, err := exec.Command("nsenter", append([]string{nsPath, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		tb.Fatalf("nft %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// listTable lists both of ctnet's tables.
func (s *sandbox) listTable(tb testing.TB) string {
	tb.Helper()
	return normalize(s.nft(tb, "list", "table", "inet", TableName)) +
		normalize(s.nft(tb, "list", "table", "bridge", TableName))
}

var elementsRE = regexp.MustCompile(`(?s)elements = \{(.*?)\}`)

// normalize sorts set elements, which nft prints in hash order, one per line.
func normalize(s string) string {
	return elementsRE.ReplaceAllStringFunc(s, func(m string) string {
		body := elementsRE.FindStringSubmatch(m)[1]
		var items []string
		for _, it := range strings.Split(body, ",") {
			if it = strings.TrimSpace(it); it != "" {
				items = append(items, it)
			}
		}
		sort.Strings(items)
		return "elements = {\n\t\t\t" + strings.Join(items, ",\n\t\t\t") + "\n\t\t}"
	})
}

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name+".nft")
	if *update {
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("table differs from %s (run with -update to accept):\n--- got\n%s\n--- want\n%s", path, got, want)
	}
}

func cidr(s string) *net.IPNet {
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		panic(err)
	}
	return n
}

var (
	netDefault  = Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr("10.88.0.0/16")}, Masquerade: true, ICC: true}
	netInternal = Network{Bridge: "ctnet1", Subnets: []*net.IPNet{cidr("10.89.0.0/24")}, Internal: true, ICC: true}
	netNoICC    = Network{Bridge: "ctnet2", Subnets: []*net.IPNet{cidr("10.90.0.0/24"), cidr("fd00:90::/64")}, Masquerade: true}

	netRouted = Network{Bridge: "ctnet3", Subnets: []*net.IPNet{cidr("10.91.0.0/24"), cidr("fd00:91::/64")}, ICC: true,
		RoutedIngress: true, AllowSpoofing: true}
	someNets = []Network{netDefault, netNoICC, netRouted}

	// An IPv4-only network whose published ports answer IPv6 clients.
	netV4Only = Network{Bridge: "ctnet4", Subnets: []*net.IPNet{cidr("10.92.0.0/24")}, Masquerade: true, ICC: true,
		PublishedIPv6: cidr("fd6e:7f21:9a00:1::/64")}
	v4OnlyEndpoint = Endpoint{Port: "veth0000005", Bridge: "ctnet4", MAC: mac("02:42:0a:5c:00:02"),
		IPs: []net.IP{net.ParseIP("10.92.0.2"), net.ParseIP("fd6e:7f21:9a00:1::a5c:2")}}
	v4OnlyPorts = []Port{
		{Proto: "tcp", HostIP: net.ParseIP("0.0.0.0"), HostPort: 8080, ContainerIP: net.ParseIP("10.92.0.2"), ContainerPort: 80, Bridge: "ctnet4"},
		{Proto: "tcp", HostIP: net.ParseIP("::"), HostPort: 8080, ContainerIP: net.ParseIP("fd6e:7f21:9a00:1::a5c:2"), ContainerPort: 80, Bridge: "ctnet4"},
		{Proto: "udp", HostIP: net.ParseIP("2001:db8:113::2"), HostPort: 5353, ContainerIP: net.ParseIP("fd6e:7f21:9a00:1::a5c:2"), ContainerPort: 53, Bridge: "ctnet4"},
	}

	someEndpoints = []Endpoint{
		{Port: "veth0000001", Bridge: "ctnet0", MAC: mac("02:42:0a:58:00:02"), IPs: []net.IP{net.ParseIP("10.88.0.2")}},
		{Port: "veth0000002", Bridge: "ctnet0", MAC: mac("02:42:0a:58:00:03"), IPs: []net.IP{net.ParseIP("10.88.0.3")}},
		{Port: "veth0000003", Bridge: "ctnet2", MAC: mac("02:42:0a:5a:00:04"), IPs: []net.IP{net.ParseIP("10.90.0.4"), net.ParseIP("fd00:90::2")}},
		{Port: "veth0000004", Bridge: "ctnet3", MAC: mac("02:42:0a:5b:00:02"), IPs: []net.IP{net.ParseIP("10.91.0.2"), net.ParseIP("fd00:91::2")}},
	}

	somePorts = []Port{
		{Proto: "tcp", HostPort: 8080, ContainerIP: net.ParseIP("10.88.0.2"), ContainerPort: 80, Bridge: "ctnet0"},
		{Proto: "tcp", HostIP: net.ParseIP("127.0.0.1"), HostPort: 8081, ContainerIP: net.ParseIP("10.88.0.2"), ContainerPort: 80, Bridge: "ctnet0"},
		{Proto: "udp", HostIP: net.ParseIP("203.0.113.2"), HostPort: 53, ContainerIP: net.ParseIP("10.88.0.3"), ContainerPort: 5353, Bridge: "ctnet0"},
		{Proto: "sctp", HostIP: net.ParseIP("0.0.0.0"), HostPort: 9999, ContainerIP: net.ParseIP("10.90.0.4"), ContainerPort: 9999, Bridge: "ctnet2"},
		{Proto: "tcp", HostIP: net.ParseIP("::"), HostPort: 8080, ContainerIP: net.ParseIP("fd00:90::2"), ContainerPort: 80, Bridge: "ctnet2"},
		{Proto: "tcp", HostIP: net.ParseIP("2001:db8::1"), HostPort: 443, ContainerIP: net.ParseIP("fd00:90::3"), ContainerPort: 8443, Bridge: "ctnet2"},
	}
)

func mac(s string) net.HardwareAddr {
	m, err := net.ParseMAC(s)
	if err != nil {
		panic(err)
	}
	return m
}

func networkOf(ep Endpoint) Network {
	for _, n := range someNets {
		if n.Bridge == ep.Bridge {
			return n
		}
	}
	panic("no network for " + ep.String())
}

func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		nets  []Network
		eps   []Endpoint
		ports []Port
	}{
		{"empty", nil, nil, nil},
		{"one-network", []Network{netDefault}, nil, nil},
		{"three-networks", []Network{netDefault, netInternal, netNoICC}, nil, nil},
		{"ports", []Network{netDefault, netNoICC}, nil, somePorts},
		{"endpoints", someNets, someEndpoints, somePorts},
		{"published-ipv6", []Network{netV4Only}, []Endpoint{v4OnlyEndpoint}, v4OnlyPorts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			f := sb.firewall(t)
			changes, err := f.Ensure(tt.nets, tt.eps, tt.ports)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) < 2 || changes[0] != "created table inet ctnet" || changes[1] != "created table bridge ctnet" {
				t.Errorf("changes = %q, want first both tables created", changes)
			}
			golden(t, tt.name, sb.listTable(t))

			// Ensure is idempotent: a second run finds nothing to do.
			changes, err = f.Ensure(tt.nets, tt.eps, tt.ports)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) != 0 {
				t.Errorf("second Ensure changed %q", changes)
			}
			if ok, err := f.Present(); err != nil || !ok {
				t.Errorf("Present() = %v, %v; want true", ok, err)
			}
		})
	}
}

// The incremental calls must produce exactly what Ensure produces.
func TestIncrementalMatchesEnsure(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewallWithTable(t)
	for _, n := range someNets {
		if err := f.AddNetwork(n); err != nil {
			t.Fatal(err)
		}
	}
	for _, ep := range someEndpoints {
		if err := f.AddEndpoint(networkOf(ep), ep); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Publish(somePorts[:3]); err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(somePorts[3:]); err != nil {
		t.Fatal(err)
	}
	golden(t, "endpoints", sb.listTable(t))
	changes, err := f.Ensure(someNets, someEndpoints, somePorts)
	if err != nil || len(changes) != 0 {
		t.Errorf("Ensure after incremental calls: %q, %v; want no changes", changes, err)
	}
}

func TestEnsureRepairs(t *testing.T) {
	const (
		nets  = "added 15 network elements"
		eps   = "added 21 endpoint elements"
		ports = "added 6 port elements"
	)
	tests := []struct {
		name    string
		damage  []string // an nft command run in the sandbox
		changes []string
	}{
		{"inet table deleted", []string{"delete table inet ctnet"},
			[]string{"created table inet ctnet", nets, ports}},
		{"bridge table deleted", []string{"delete table bridge ctnet"},
			[]string{"created table bridge ctnet", eps}},
		{"both tables deleted", []string{"delete table inet ctnet", "delete table bridge ctnet"},
			[]string{"created table inet ctnet", "created table bridge ctnet", nets, eps, ports}},
		{"port removed by hand", []string{"delete element inet ctnet ports4_any { tcp . 8080 }"},
			[]string{"added 1 port element"}},
		{"port changed by hand", []string{"delete element inet ctnet ports4_any { tcp . 8080 }",
			"add element inet ctnet ports4_any { tcp . 8080 : 10.88.0.99 . 80 }"},
			[]string{"removed 1 port element", "added 1 port element"}},
		{"foreign elements", []string{"add element inet ctnet bridges { \"eth9\" }",
			"add element inet ctnet ports6_any { udp . 1 : fd00::1 . 1 }"},
			[]string{"removed 1 network element", "removed 1 port element"}},
		{"guard removed by hand", []string{"delete element bridge ctnet guarded_ports { \"veth0000001\" }"},
			[]string{"added 1 endpoint element"}},
		{"endpoint address changed by hand", []string{"delete element bridge ctnet port_addrs4 { \"veth0000001\" . 10.88.0.2 }",
			"add element bridge ctnet port_addrs4 { \"veth0000001\" . 10.88.0.99 }"},
			[]string{"removed 1 endpoint element", "added 1 endpoint element"}},
		{"foreign endpoint", []string{"add element bridge ctnet port_macs { \"veth9\" . 02:00:00:00:00:09 }",
			"add element bridge ctnet guarded_ports { \"veth9\" }"},
			[]string{"removed 2 endpoint elements"}},
		{"rule deleted", []string{"flush chain inet ctnet forward"},
			[]string{"rebuilt table inet ctnet (chain forward has 0 rules, want 9)", nets, ports}},
		{"chain added", []string{"add chain inet ctnet extra"},
			[]string{"rebuilt table inet ctnet (9 chains, want 8)", nets, ports}},
		{"policy changed", []string{"add chain inet ctnet forward { type filter hook forward priority filter; policy drop; }"},
			[]string{"rebuilt table inet ctnet (chain forward altered)", nets, ports}},
		{"bridge rules deleted", []string{"flush chain bridge ctnet antispoof"},
			[]string{"rebuilt table bridge ctnet (chain antispoof has 0 rules, want 11)", eps}},
		{"bridge policy changed", []string{"add chain bridge ctnet prerouting { type filter hook prerouting priority filter; policy drop; }"},
			[]string{"rebuilt table bridge ctnet (chain prerouting altered)", eps}},
		{"bridge set deleted", []string{"flush chain bridge ctnet from_port", "delete set bridge ctnet guarded_ports"},
			[]string{"rebuilt table bridge ctnet (chain from_port has 0 rules, want 10)", eps}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			f := sb.firewall(t)
			if _, err := f.Ensure(someNets, someEndpoints, somePorts); err != nil {
				t.Fatal(err)
			}
			for _, cmd := range tt.damage {
				sb.nft(t, strings.Fields(cmd)...)
			}
			if ok, err := f.Present(); err != nil {
				t.Fatal(err)
			} else if want := strings.HasPrefix(tt.changes[0], "added") || strings.HasPrefix(tt.changes[0], "removed"); ok != want {
				t.Errorf("Present() after damage = %v, want %v", ok, want)
			}
			changes, err := f.Ensure(someNets, someEndpoints, somePorts)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(changes, "; ") != strings.Join(tt.changes, "; ") {
				t.Errorf("changes = %q, want %q", changes, tt.changes)
			}
			golden(t, "endpoints", sb.listTable(t))
		})
	}
}

func TestForeignTableUntouched(t *testing.T) {
	sb := newSandbox(t)
	sb.nft(t, "-f", "testdata/foreign.input")
	foreign := func() string {
		return sb.nft(t, "list", "table", "ip", "filter") + sb.nft(t, "list", "table", "bridge", "filter")
	}
	before := foreign()
	f := sb.firewall(t)
	ep := someEndpoints[0]
	if _, err := f.Ensure([]Network{netDefault}, []Endpoint{ep}, somePorts[:2]); err != nil {
		t.Fatal(err)
	}
	sb.nft(t, "delete", "table", "inet", "ctnet")
	sb.nft(t, "delete", "table", "bridge", "ctnet")
	if _, err := f.Ensure([]Network{netDefault}, []Endpoint{ep}, somePorts[:2]); err != nil {
		t.Fatal(err)
	}
	if err := f.Unpublish(somePorts[:2]); err != nil {
		t.Fatal(err)
	}
	if err := f.DelEndpoint(ep); err != nil {
		t.Fatal(err)
	}
	if err := f.DelNetwork(netDefault); err != nil {
		t.Fatal(err)
	}
	if after := foreign(); after != before {
		t.Errorf("foreign tables changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
	tables := strings.Split(strings.TrimSpace(sb.nft(t, "list", "tables")), "\n")
	sort.Strings(tables)
	if got, want := strings.Join(tables, "; "), "table bridge ctnet; table bridge filter; table inet ctnet; table ip filter"; got != want {
		t.Errorf("tables = %q, want %q", got, want)
	}
}

func TestUnpublishRemovesExactlyItsElements(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewallWithTable(t)
	if err := f.AddNetwork(netDefault); err != nil {
		t.Fatal(err)
	}
	if err := f.AddNetwork(netNoICC); err != nil {
		t.Fatal(err)
	}
	other := somePorts[3:]
	if err := f.Publish(other); err != nil {
		t.Fatal(err)
	}
	withoutMine := sb.listTable(t)
	mine := somePorts[:3]
	if err := f.Publish(mine); err != nil {
		t.Fatal(err)
	}
	if err := f.Unpublish(mine); err != nil {
		t.Fatal(err)
	}
	if got := sb.listTable(t); got != withoutMine {
		t.Errorf("after Unpublish:\n%s\nwant:\n%s", got, withoutMine)
	}
	// Idempotent: again, and with the table gone.
	if err := f.Unpublish(mine); err != nil {
		t.Errorf("second Unpublish: %v", err)
	}
	if err := f.DelNetwork(netDefault); err != nil {
		t.Fatal(err)
	}
	if err := f.DelNetwork(netDefault); err != nil {
		t.Errorf("second DelNetwork: %v", err)
	}
	sb.nft(t, "delete", "table", "inet", "ctnet")
	if err := f.Unpublish(mine); err != nil {
		t.Errorf("Unpublish without table: %v", err)
	}
	if err := f.DelNetwork(netNoICC); err != nil {
		t.Errorf("DelNetwork without table: %v", err)
	}
}

func TestUnpublishStaleTarget(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewallWithTable(t)
	if err := f.Publish(somePorts[:1]); err != nil {
		t.Fatal(err)
	}
	stale := somePorts[0]
	stale.ContainerIP = net.ParseIP("10.88.0.77")
	if err := f.Unpublish([]Port{stale}); err != nil {
		t.Fatal(err)
	}
	if out := sb.nft(t, "list", "map", "inet", "ctnet", "ports4_any"); strings.Contains(out, "8080") {
		t.Errorf("port still published:\n%s", out)
	}
}

func TestPublishConflict(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewallWithTable(t)
	if err := f.Publish(somePorts[:1]); err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(somePorts[:1]); err != nil {
		t.Errorf("publishing the same port again: %v", err)
	}
	before := sb.listTable(t)
	clash := somePorts[0]
	clash.ContainerIP = net.ParseIP("10.88.0.9")
	if err := f.Publish([]Port{somePorts[2], clash}); err == nil {
		t.Errorf("publishing a taken host port succeeded")
	} else {
		t.Logf("conflict error: %v", err)
	}
	if got := sb.listTable(t); got != before {
		t.Errorf("failed Publish changed the table:\n%s", got)
	}
}

func TestPortValidation(t *testing.T) {
	c4, c6 := net.ParseIP("10.0.0.2"), net.ParseIP("fd00::2")
	tests := []struct {
		name string
		p    Port
		set  *setSpec // nil = error expected
	}{
		{"all v4", Port{Proto: "tcp", HostPort: 1, ContainerIP: c4, ContainerPort: 1}, mapPorts4A},
		{"all v6", Port{Proto: "udp", HostPort: 1, ContainerIP: c6, ContainerPort: 1}, mapPorts6A},
		{"0.0.0.0", Port{Proto: "tcp", HostIP: net.IPv4zero, HostPort: 1, ContainerIP: c4, ContainerPort: 1}, mapPorts4A},
		{"loopback", Port{Proto: "tcp", HostIP: net.ParseIP("127.0.0.1"), HostPort: 1, ContainerIP: c4, ContainerPort: 1}, mapPorts4},
		{"v6 addr", Port{Proto: "sctp", HostIP: net.ParseIP("::1"), HostPort: 1, ContainerIP: c6, ContainerPort: 1}, mapPorts6},
		{"bad proto", Port{Proto: "icmp", HostPort: 1, ContainerIP: c4, ContainerPort: 1}, nil},
		{"port 0", Port{Proto: "tcp", ContainerIP: c4, ContainerPort: 1}, nil},
		{"mixed families", Port{Proto: "tcp", HostIP: net.ParseIP("::"), HostPort: 1, ContainerIP: c4, ContainerPort: 1}, nil},
		{"mixed families addr", Port{Proto: "tcp", HostIP: net.ParseIP("192.0.2.1"), HostPort: 1, ContainerIP: c6, ContainerPort: 1}, nil},
		{"no container ip", Port{Proto: "tcp", HostPort: 1, ContainerPort: 1}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.p.element()
			if tt.set == nil {
				if err == nil {
					t.Errorf("no error, element in %s", e.set.name)
				}
				return
			}
			if err != nil || e.set != tt.set {
				t.Errorf("got %v, %v; want %s", e.set, err, tt.set.name)
			}
		})
	}
	if _, err := (Network{Bridge: "a-name-that-is-too-long"}).elements(); err == nil {
		t.Error("long bridge name accepted")
	}
}

// Without the table, element changes change nothing and say so: a table
// holding only these elements would hide every other network and port.
func TestAddWithoutTable(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewall(t)
	ep := someEndpoints[0]
	if err := f.AddNetwork(netDefault); !errors.Is(err, ErrNoTable) {
		t.Errorf("AddNetwork without table: %v, want ErrNoTable", err)
	}
	if err := f.Publish(somePorts[:1]); !errors.Is(err, ErrNoTable) {
		t.Errorf("Publish without table: %v, want ErrNoTable", err)
	}
	if err := f.AddEndpoint(netDefault, ep); !errors.Is(err, ErrNoTable) {
		t.Errorf("AddEndpoint without table: %v, want ErrNoTable", err)
	}
	if out := sb.nft(t, "list", "tables"); strings.Contains(out, TableName) {
		t.Errorf("a table was made:\n%s", out)
	}
	// One table is not the other.
	if _, err := f.Ensure(nil, nil, nil); err != nil {
		t.Fatal(err)
	}
	sb.nft(t, "delete", "table", "bridge", "ctnet")
	if err := f.AddEndpoint(netDefault, ep); !errors.Is(err, ErrNoTable) || !strings.Contains(err.Error(), "table bridge ctnet") {
		t.Errorf("AddEndpoint without the bridge table: %v, want ErrNoTable naming it", err)
	} else {
		t.Logf("error: %v", err)
	}
	if err := f.AddNetwork(netDefault); err != nil {
		t.Errorf("AddNetwork with the inet table: %v", err)
	}
	if out := sb.nft(t, "list", "tables"); out != "table inet ctnet\n" {
		t.Errorf("tables:\n%s", out)
	}
}

func TestEndpointValidation(t *testing.T) {
	good := Endpoint{Port: "veth1a2b3c4", Bridge: "ctnet0", MAC: mac("02:42:0a:58:00:02"),
		IPs: []net.IP{net.ParseIP("10.88.0.2"), net.ParseIP("fd00:88::2")}}
	with := func(f func(*Endpoint)) Endpoint {
		ep := good
		ep.IPs = append([]net.IP{}, good.IPs...)
		f(&ep)
		return ep
	}
	bad := map[string]Endpoint{
		"no port":         with(func(ep *Endpoint) { ep.Port = "" }),
		"long port":       with(func(ep *Endpoint) { ep.Port = "veth0123456789ab" }),
		"NUL in port":     with(func(ep *Endpoint) { ep.Port = "veth\x00" }),
		"other bridge":    with(func(ep *Endpoint) { ep.Bridge = "ctnet1" }),
		"no bridge":       with(func(ep *Endpoint) { ep.Bridge = "" }),
		"no MAC":          with(func(ep *Endpoint) { ep.MAC = nil }),
		"short MAC":       with(func(ep *Endpoint) { ep.MAC = ep.MAC[:5] }),
		"long MAC":        with(func(ep *Endpoint) { ep.MAC = mac("02:00:5e:10:00:00:00:01") }),
		"multicast MAC":   with(func(ep *Endpoint) { ep.MAC = mac("01:00:5e:00:00:01") }),
		"broadcast MAC":   with(func(ep *Endpoint) { ep.MAC = mac("ff:ff:ff:ff:ff:ff") }),
		"zero MAC":        with(func(ep *Endpoint) { ep.MAC = make(net.HardwareAddr, 6) }),
		"nil IP":          with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, nil) }),
		"3-byte IP":       with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.IP{10, 0, 0}) }),
		"0.0.0.0":         with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.IPv4zero) }),
		"::":              with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.IPv6unspecified) }),
		"127.0.0.1":       with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.ParseIP("127.0.0.1")) }),
		"::1":             with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.IPv6loopback) }),
		"IPv4 multicast":  with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.ParseIP("224.0.0.1")) }),
		"IPv6 multicast":  with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.ParseIP("ff02::1")) }),
		"IPv4 broadcast":  with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.IPv4bcast) }),
		"mapped loopback": with(func(ep *Endpoint) { ep.IPs = append(ep.IPs, net.ParseIP("::ffff:127.0.0.1")) }),
	}
	for name, ep := range bad {
		t.Run(name, func(t *testing.T) {
			if els, err := ep.elements(netDefault); err == nil {
				t.Errorf("accepted: %d elements", len(els))
			} else {
				t.Logf("error: %v", err)
			}
		})
	}

	sets := func(n Network, ep Endpoint) map[string]int {
		els, err := ep.elements(n)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string]int{}
		for _, e := range els {
			got[e.set.name]++
		}
		return got
	}
	if got := sets(netDefault, good); fmt.Sprint(got) != "map[guarded_ports:1 port_addrs4:1 port_addrs6:2 port_macs:1 ports:1]" {
		t.Errorf("guarded endpoint: %v", got)
	}
	open := netDefault
	open.AllowSpoofing = true
	if got := sets(open, good); got["guarded_ports"] != 0 || got["ports"] != 1 {
		t.Errorf("endpoint of a network allowing spoofing: %v", got)
	}
	// Mapped IPv4 is IPv4; duplicates (the link-local given again) are one element.
	dup := with(func(ep *Endpoint) {
		ep.IPs = []net.IP{net.ParseIP("::ffff:10.88.0.2"), net.ParseIP("10.88.0.2").To4(), LinkLocal(ep.MAC)}
	})
	if got := sets(netDefault, dup); got["port_addrs4"] != 1 || got["port_addrs6"] != 1 {
		t.Errorf("duplicate addresses: %v", got)
	}
	if got := LinkLocal(mac("02:42:0a:58:00:02")).String(); got != "fe80::42:aff:fe58:2" {
		t.Errorf("LinkLocal = %s", got)
	}
}

// Bad input to Ensure changes nothing.
func TestEnsureRefuses(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewall(t)
	if _, err := f.Ensure(someNets, someEndpoints, somePorts); err != nil {
		t.Fatal(err)
	}
	before := sb.listTable(t)
	other := someEndpoints[0]
	other.IPs = []net.IP{net.ParseIP("10.88.0.9")}
	noNet := someEndpoints[3]
	noNet.Bridge = "ctnet9"
	changed := netDefault
	changed.ICC = false
	for name, tc := range map[string]struct {
		nets []Network
		eps  []Endpoint
	}{
		"endpoint on no network's bridge": {someNets, append(someEndpoints[:3:3], noNet)},
		"two endpoints on one port":       {someNets, append(someEndpoints[:4:4], other)},
		"two networks on one bridge":      {append(someNets[:3:3], changed), someEndpoints},
		"bad endpoint":                    {someNets, append(someEndpoints[:4:4], Endpoint{Port: "veth9", Bridge: "ctnet0"})},
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := f.Ensure(tc.nets, tc.eps, somePorts); err == nil {
				t.Error("accepted")
			} else {
				t.Logf("error: %v", err)
			}
			if got := sb.listTable(t); got != before {
				t.Errorf("refused Ensure changed the tables:\n%s", got)
			}
		})
	}
	// The same endpoint or network twice is no conflict.
	if changes, err := f.Ensure(append(someNets, netDefault), append(someEndpoints, someEndpoints[0]), somePorts); err != nil || len(changes) > 0 {
		t.Errorf("Ensure with duplicates: %q, %v", changes, err)
	}
	// Turning anti-spoofing off for a network is one element per endpoint.
	nets := append([]Network{}, someNets...)
	nets[0].AllowSpoofing = true
	if changes, err := f.Ensure(nets, someEndpoints, somePorts); err != nil || strings.Join(changes, "; ") != "removed 2 endpoint elements" {
		t.Errorf("Ensure with anti-spoofing off on ctnet0: %q, %v", changes, err)
	}
}

func TestDelEndpoint(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewallWithTable(t)
	mine, other := someEndpoints[2], someEndpoints[3]
	must(t, "add other", f.AddEndpoint(netRouted, other))
	without := sb.listTable(t)
	must(t, "add mine", f.AddEndpoint(netNoICC, mine))
	if got := sb.listTable(t); got == without {
		t.Fatal("AddEndpoint changed nothing")
	}
	must(t, "delete mine", f.DelEndpoint(mine))
	if got := sb.listTable(t); got != without {
		t.Errorf("after DelEndpoint:\n%s\nwant:\n%s", got, without)
	}
	// Idempotent, whatever its network's switch was, and with either table gone.
	must(t, "delete mine again", f.DelEndpoint(mine))
	must(t, "delete other (spoofing allowed)", f.DelEndpoint(other))
	if out := sb.nft(t, "list", "set", "bridge", "ctnet", "ports"); strings.Contains(out, "veth") {
		t.Errorf("ports left:\n%s", out)
	}
	must(t, "add again", f.AddEndpoint(netNoICC, mine))
	sb.nft(t, "delete", "table", "inet", "ctnet")
	must(t, "delete without the inet table", f.DelEndpoint(mine))
	sb.nft(t, "delete", "table", "bridge", "ctnet")
	must(t, "delete without tables", f.DelEndpoint(mine))
	if err := f.DelEndpoint(Endpoint{Port: "veth1"}); err == nil {
		t.Error("DelEndpoint without a MAC accepted")
	}
}

// Thousands of ports (a range of 2000) go in parts no batch can outgrow,
// and a part that fails takes back the parts before it: all or nothing.
func TestPublishManyPorts(t *testing.T) {
	sb := newSandbox(t)
	f := sb.firewallWithTable(t)
	many := func(first, n int, ip string) []Port {
		var ps []Port
		for i := range n {
			p := uint16(first + i)
			ps = append(ps, Port{Proto: "tcp", HostPort: p, ContainerIP: net.ParseIP(ip), ContainerPort: p, Bridge: "ctnet0"})
		}
		return ps
	}
	before := sb.listTable(t)
	ports := many(20000, 2000, "10.88.0.2")
	if err := f.Publish(ports); err != nil {
		t.Fatalf("publish 2000 ports: %v", err)
	}
	if n := strings.Count(sb.nft(t, "list", "map", "inet", TableName, "ports4_any"), "10.88.0.2 . "); n < 2000 {
		t.Errorf("%d of 2000 ports in the map", n)
	}
	// Another container's ports whose last part collides: none stays, and
	// the error is one short line.
	clash := many(30000, 1000, "10.88.0.3")
	clash = append(clash, many(20500, 1, "10.88.0.3")...)
	mid := sb.listTable(t)
	err := f.Publish(clash)
	if err == nil {
		t.Fatal("publishing a taken host port succeeded")
	}
	if len(err.Error()) > 400 || strings.Contains(err.Error(), "\n") {
		t.Errorf("error is %d bytes: %.300s", len(err.Error()), err)
	}
	if got := sb.listTable(t); got != mid {
		t.Errorf("a failed publish of 1001 ports left some behind")
	}
	if err := f.Unpublish(ports); err != nil {
		t.Fatal(err)
	}
	if got := sb.listTable(t); got != before {
		t.Errorf("unpublishing 2000 ports left some behind")
	}
}
