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
	if _, err := f.Ensure(nil, nil); err != nil {
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

func (s *sandbox) listTable(tb testing.TB) string {
	tb.Helper()
	return normalize(s.nft(tb, "list", "table", "inet", TableName))
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

	somePorts = []Port{
		{Proto: "tcp", HostPort: 8080, ContainerIP: net.ParseIP("10.88.0.2"), ContainerPort: 80, Bridge: "ctnet0"},
		{Proto: "tcp", HostIP: net.ParseIP("127.0.0.1"), HostPort: 8081, ContainerIP: net.ParseIP("10.88.0.2"), ContainerPort: 80, Bridge: "ctnet0"},
		{Proto: "udp", HostIP: net.ParseIP("203.0.113.2"), HostPort: 53, ContainerIP: net.ParseIP("10.88.0.3"), ContainerPort: 5353, Bridge: "ctnet0"},
		{Proto: "sctp", HostIP: net.ParseIP("0.0.0.0"), HostPort: 9999, ContainerIP: net.ParseIP("10.90.0.4"), ContainerPort: 9999, Bridge: "ctnet2"},
		{Proto: "tcp", HostIP: net.ParseIP("::"), HostPort: 8080, ContainerIP: net.ParseIP("fd00:90::2"), ContainerPort: 80, Bridge: "ctnet2"},
		{Proto: "tcp", HostIP: net.ParseIP("2001:db8::1"), HostPort: 443, ContainerIP: net.ParseIP("fd00:90::3"), ContainerPort: 8443, Bridge: "ctnet2"},
	}
)

func TestGolden(t *testing.T) {
	tests := []struct {
		name  string
		nets  []Network
		ports []Port
	}{
		{"empty", nil, nil},
		{"one-network", []Network{netDefault}, nil},
		{"three-networks", []Network{netDefault, netInternal, netNoICC}, nil},
		{"ports", []Network{netDefault, netNoICC}, somePorts},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			f := sb.firewall(t)
			changes, err := f.Ensure(tt.nets, tt.ports)
			if err != nil {
				t.Fatal(err)
			}
			if len(changes) == 0 || changes[0] != "created table inet ctnet" {
				t.Errorf("changes = %q, want first %q", changes, "created table inet ctnet")
			}
			golden(t, tt.name, sb.listTable(t))

			// Ensure is idempotent: a second run finds nothing to do.
			changes, err = f.Ensure(tt.nets, tt.ports)
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
	for _, n := range []Network{netDefault, netNoICC} {
		if err := f.AddNetwork(n); err != nil {
			t.Fatal(err)
		}
	}
	if err := f.Publish(somePorts[:3]); err != nil {
		t.Fatal(err)
	}
	if err := f.Publish(somePorts[3:]); err != nil {
		t.Fatal(err)
	}
	golden(t, "ports", sb.listTable(t))
	changes, err := f.Ensure([]Network{netDefault, netNoICC}, somePorts)
	if err != nil || len(changes) != 0 {
		t.Errorf("Ensure after incremental calls: %q, %v; want no changes", changes, err)
	}
}

func TestEnsureRepairs(t *testing.T) {
	nets := []Network{netDefault, netNoICC}
	tests := []struct {
		name    string
		damage  []string // an nft command run in the sandbox
		changes []string
	}{
		{"table deleted", []string{"delete table inet ctnet"},
			[]string{"created table inet ctnet", "added 10 network elements", "added 6 port elements"}},
		{"port removed by hand", []string{"delete element inet ctnet ports4_any { tcp . 8080 }"},
			[]string{"added 1 port element"}},
		{"port changed by hand", []string{"delete element inet ctnet ports4_any { tcp . 8080 }",
			"add element inet ctnet ports4_any { tcp . 8080 : 10.88.0.99 . 80 }"},
			[]string{"removed 1 port element", "added 1 port element"}},
		{"foreign elements", []string{"add element inet ctnet bridges { \"eth9\" }",
			"add element inet ctnet ports6_any { udp . 1 : fd00::1 . 1 }"},
			[]string{"removed 1 network element", "removed 1 port element"}},
		{"rule deleted", []string{"flush chain inet ctnet forward"},
			[]string{"rebuilt table inet ctnet (chain forward has 0 rules, want 6)", "added 10 network elements", "added 6 port elements"}},
		{"chain added", []string{"add chain inet ctnet extra"},
			[]string{"rebuilt table inet ctnet (8 chains, want 7)", "added 10 network elements", "added 6 port elements"}},
		{"policy changed", []string{"add chain inet ctnet forward { type filter hook forward priority filter; policy drop; }"},
			[]string{"rebuilt table inet ctnet (chain forward altered)", "added 10 network elements", "added 6 port elements"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sb := newSandbox(t)
			f := sb.firewall(t)
			if _, err := f.Ensure(nets, somePorts); err != nil {
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
			changes, err := f.Ensure(nets, somePorts)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(changes, "; ") != strings.Join(tt.changes, "; ") {
				t.Errorf("changes = %q, want %q", changes, tt.changes)
			}
			golden(t, "ports", sb.listTable(t))
		})
	}
}

func TestForeignTableUntouched(t *testing.T) {
	sb := newSandbox(t)
	sb.nft(t, "-f", "testdata/foreign.input")
	before := sb.nft(t, "list", "table", "ip", "filter")
	f := sb.firewall(t)
	if _, err := f.Ensure([]Network{netDefault}, somePorts[:2]); err != nil {
		t.Fatal(err)
	}
	sb.nft(t, "delete", "table", "inet", "ctnet")
	if _, err := f.Ensure([]Network{netDefault}, somePorts[:2]); err != nil {
		t.Fatal(err)
	}
	if err := f.Unpublish(somePorts[:2]); err != nil {
		t.Fatal(err)
	}
	if err := f.DelNetwork(netDefault); err != nil {
		t.Fatal(err)
	}
	if after := sb.nft(t, "list", "table", "ip", "filter"); after != before {
		t.Errorf("foreign table changed:\n--- before\n%s\n--- after\n%s", before, after)
	}
	if got := sb.nft(t, "list", "tables"); got != "table ip filter\ntable inet ctnet\n" {
		t.Errorf("tables = %q", got)
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
		set  string // "" = error expected
	}{
		{"all v4", Port{Proto: "tcp", HostPort: 1, ContainerIP: c4, ContainerPort: 1}, mapPorts4A},
		{"all v6", Port{Proto: "udp", HostPort: 1, ContainerIP: c6, ContainerPort: 1}, mapPorts6A},
		{"0.0.0.0", Port{Proto: "tcp", HostIP: net.IPv4zero, HostPort: 1, ContainerIP: c4, ContainerPort: 1}, mapPorts4A},
		{"loopback", Port{Proto: "tcp", HostIP: net.ParseIP("127.0.0.1"), HostPort: 1, ContainerIP: c4, ContainerPort: 1}, mapPorts4},
		{"v6 addr", Port{Proto: "sctp", HostIP: net.ParseIP("::1"), HostPort: 1, ContainerIP: c6, ContainerPort: 1}, mapPorts6},
		{"bad proto", Port{Proto: "icmp", HostPort: 1, ContainerIP: c4, ContainerPort: 1}, ""},
		{"port 0", Port{Proto: "tcp", ContainerIP: c4, ContainerPort: 1}, ""},
		{"mixed families", Port{Proto: "tcp", HostIP: net.ParseIP("::"), HostPort: 1, ContainerIP: c4, ContainerPort: 1}, ""},
		{"mixed families addr", Port{Proto: "tcp", HostIP: net.ParseIP("192.0.2.1"), HostPort: 1, ContainerIP: c6, ContainerPort: 1}, ""},
		{"no container ip", Port{Proto: "tcp", HostPort: 1, ContainerPort: 1}, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, err := tt.p.element()
			if tt.set == "" {
				if err == nil {
					t.Errorf("no error, element in %s", e.set)
				}
				return
			}
			if err != nil || e.set != tt.set {
				t.Errorf("got %s, %v; want %s", e.set, err, tt.set)
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
	if err := f.AddNetwork(netDefault); !errors.Is(err, ErrNoTable) {
		t.Errorf("AddNetwork without table: %v, want ErrNoTable", err)
	}
	if err := f.Publish(somePorts[:1]); !errors.Is(err, ErrNoTable) {
		t.Errorf("Publish without table: %v, want ErrNoTable", err)
	}
	if out := sb.nft(t, "list", "tables"); strings.Contains(out, TableName) {
		t.Errorf("a table was made:\n%s", out)
	}
}
