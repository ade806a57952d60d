package e2e

import (
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// The segment the macvlan tests put containers on: the sandbox host's uplink
// eth0, whose other end (the upstream namespace) is their neighbour and
// router at mvGateway.
const (
	mvSubnet  = "10.77.0.0/24"
	mvGateway = "10.77.0.1"
)

func mvSandbox(t *testing.T) *sandbox.Sandbox {
	t.Helper()
	s := sandbox.New(t)
	s.Upstream.MustRun("ip", "addr", "add", mvGateway+"/24", "dev", "eth0")
	s.Upstream.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=1")
	return s
}

func linkKind(t *testing.T, ns *sandbox.NS, dev string) string {
	t.Helper()
	out := ns.MustRun("ip", "-o", "-d", "link", "show", dev)
	for _, k := range []string{"macvlan mode bridge", "macvlan mode private", "macvlan mode vepa", "macvlan mode passthru", "bridge_id", "vlan protocol"} {
		if strings.Contains(out, k) {
			return k
		}
	}
	return out
}

func TestMacvlanOnTheParentsSegment(t *testing.T) {
	t.Parallel()
	s := mvSandbox(t)
	s.MustCtnet("network", "create", "-d", "macvlan", "-o", "parent=eth0", "--subnet", mvSubnet, "--gateway", mvGateway, "lan")
	a, b := s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "lan", "--netns", a.NetPath())
	s.MustCtnet("network", "connect", "lan", "--netns", b.NetPath(), "--ip", "10.77.0.50")
	if k := linkKind(t, a, "eth0"); k != "macvlan mode bridge" {
		t.Errorf("eth0 in the container: %s", k)
	}
	if l := a.MustRun("ip", "-o", "link", "show", "eth0"); !strings.Contains(l, "02:42:0a:4d:00:02") || !strings.Contains(l, "mtu 1400") {
		t.Errorf("eth0 (own MAC, the parent's MTU): %s", l)
	}
	// The neighbour reaches them directly, on the segment: its neighbour
	// table holds their own MACs.
	for _, ip := range []string{"10.77.0.2", "10.77.0.50"} {
		if err := s.Upstream.Ping(ip); err != nil {
			t.Error(err)
		}
	}
	if n := s.Upstream.MustRun("ip", "neigh", "show", "10.77.0.2"); !strings.Contains(n, "02:42:0a:4d:00:02") {
		t.Errorf("upstream's neighbour entry: %s", n)
	}
	if err := a.Ping("10.77.0.50"); err != nil {
		t.Error(err)
	}
	// They reach the outside through the segment's router, without NAT.
	if err := a.Ping(sandbox.FarAddr); err != nil {
		t.Error(err)
	}
	if src := observedSource(t, s, a); src != "10.77.0.2" {
		t.Errorf("upstream saw source %q, want the container's own 10.77.0.2", src)
	}
	// The host cannot reach its own macvlan containers, even with a route.
	s.Host.MustRun("ip", "route", "add", mvSubnet, "dev", "eth0")
	if err := s.Host.Ping("10.77.0.2"); err == nil {
		t.Error("the host reached its macvlan container through the parent; the kernel should not deliver that")
	}
	out := s.MustCtnet("network", "inspect", "-f", "{{.Driver}} {{index .Options \"parent\"}} {{index .Options \"macvlan_mode\"}}", "lan")
	if strings.TrimSpace(out) != "macvlan eth0 bridge" {
		t.Errorf("inspect: %q", out)
	}
	// Nothing in the host's filter: macvlan traffic never passes its stack.
	if nft := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); strings.Contains(nft, "eth0") {
		t.Errorf("the firewall names the parent:\n%s", nft)
	}

	// Disconnecting a living namespace removes its macvlan there.
	s.MustCtnet("network", "disconnect", "lan", "--netns", b.NetPath())
	if out, err := b.Run("ip", "link", "show", "eth0"); err == nil {
		t.Errorf("eth0 left after disconnect: %s", out)
	}
	// A second network on the same parent is refused, as Docker does.
	_, e, err := s.Ctnet("network", "create", "-d", "macvlan", "-o", "parent=eth0", "--subnet", "10.78.0.0/24", "lan2")
	if err == nil || !strings.Contains(e, `network "lan" is already using parent interface eth0`) {
		t.Errorf("second network on eth0: %v %s", err, e)
	}
	s.MustCtnet("network", "disconnect", "lan", "--netns", a.NetPath())
	s.MustCtnet("network", "rm", "lan")
	if _, err := s.Host.Run("ip", "link", "show", "eth0"); err != nil {
		t.Error("network rm removed the parent it did not make")
	}
}

func TestMacvlanModes(t *testing.T) {
	t.Parallel()
	s := mvSandbox(t)
	s.MustCtnet("network", "create", "-d", "macvlan", "-o", "parent=eth0", "-o", "macvlan_mode=private", "--subnet", mvSubnet, "--gateway", mvGateway, "priv")
	a, b := s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "priv", "--netns", a.NetPath())
	s.MustCtnet("network", "connect", "priv", "--netns", b.NetPath())
	if k := linkKind(t, a, "eth0"); k != "macvlan mode private" {
		t.Errorf("eth0: %s", k)
	}
	if err := s.Upstream.Ping("10.77.0.3"); err != nil {
		t.Error(err)
	}
	if err := a.Ping("10.77.0.3"); err == nil {
		t.Error("private mode: one container reached the other")
	}
	for _, c := range [][]string{
		{"-o", "parent=eth0", "-o", "macvlan_mode=source"},
		{"-o", "parent=nosuch0"},
		{"-o", "mode=bridge", "-o", "parent=eth0"},
		{},
	} {
		args := append([]string{"network", "create", "-d", "macvlan", "--subnet", "10.79.0.0/24"}, c...)
		if _, e, err := s.Ctnet(append(args, "bad")...); err == nil || strings.Count(strings.TrimSpace(e), "\n") > 0 {
			t.Errorf("%v: %v, want one line: %s", c, err, e)
		}
	}
	if out := s.MustCtnet("network", "ls", "-q", "--filter", "name=bad"); strings.TrimSpace(out) != "" {
		t.Errorf("bad input left a network: %s", out)
	}
}

// vlanSupported says whether the kernel makes 802.1Q devices.
func vlanSupported(t *testing.T, s *sandbox.Sandbox) bool {
	_, err := s.Host.Run("ip", "link", "add", "link", "eth0", "name", "eth0.4000", "type", "vlan", "id", "4000")
	if err != nil {
		return false
	}
	s.Host.MustRun("ip", "link", "del", "eth0.4000")
	return true
}

func TestMacvlanVLANParent(t *testing.T) {
	t.Parallel()
	s := mvSandbox(t)
	args := []string{"network", "create", "-d", "macvlan", "-o", "parent=eth0.10", "--subnet", "10.77.10.0/24", "--gateway", "10.77.10.1", "v10"}
	if !vlanSupported(t, s) {
		// This kernel has no 8021q: said in one line, nothing left.
		_, e, err := s.Ctnet(args...)
		if err == nil || !strings.Contains(e, "this kernel has no 802.1Q VLAN devices") {
			t.Errorf("create on a kernel without VLANs: %v %s", err, e)
		}
		if out, err := s.Host.Run("ip", "link", "show", "eth0.10"); err == nil {
			t.Errorf("left behind: %s", out)
		}
		if out := s.MustCtnet("network", "ls", "-q", "--filter", "name=v10"); strings.TrimSpace(out) != "" {
			t.Errorf("left a network: %s", out)
		}
		t.Skip("the kernel has no 802.1Q VLAN devices: the tagged path is checked where it has")
	}
	s.Upstream.MustRun("ip", "link", "add", "link", "eth0", "name", "eth0.10", "type", "vlan", "id", "10")
	s.Upstream.MustRun("ip", "addr", "add", "10.77.10.1/24", "dev", "eth0.10")
	s.Upstream.MustRun("ip", "link", "set", "eth0.10", "up")
	s.MustCtnet(args...)
	if k := linkKind(t, s.Host, "eth0.10"); k != "vlan protocol" {
		t.Errorf("eth0.10: %s", k)
	}
	a := s.Netns()
	s.MustCtnet("network", "connect", "v10", "--netns", a.NetPath())
	if err := s.Upstream.Ping("10.77.10.2"); err != nil {
		t.Error(err)
	}
	// Deleted behind ctnet's back (its macvlans go with it): reconcile
	// makes both again.
	s.Host.MustRun("ip", "link", "del", "eth0.10")
	s.MustCtnet("system", "reconcile")
	if err := s.Upstream.Ping("10.77.10.2"); err != nil {
		t.Errorf("after reconcile: %v", err)
	}
	s.MustCtnet("network", "disconnect", "v10", "--netns", a.NetPath())
	s.MustCtnet("network", "rm", "v10")
	if out, err := s.Host.Run("ip", "link", "show", "eth0.10"); err == nil {
		t.Errorf("the VLAN ctnet made outlived its network: %s", out)
	}
}

func TestMacvlanInternalAndReconcile(t *testing.T) {
	t.Parallel()
	s := mvSandbox(t)
	s.MustCtnet("network", "create", "-d", "macvlan", "--internal", "--subnet", "10.77.5.0/24", "iso")
	parent := strings.TrimSpace(s.MustCtnet("network", "inspect", "-f", `{{index .Options "parent"}}`, "iso"))
	if !strings.HasPrefix(parent, "dm-") {
		t.Fatalf("internal network's parent: %q", parent)
	}
	if k := linkKind(t, s.Host, parent); k != "bridge_id" {
		t.Errorf("%s: %s", parent, k)
	}
	a, b := s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "iso", "--netns", a.NetPath())
	s.MustCtnet("network", "connect", "iso", "--netns", b.NetPath())
	if err := a.Ping("10.77.5.3"); err != nil {
		t.Error(err)
	}
	if r := a.MustRun("ip", "route", "show", "default"); r != "" {
		t.Errorf("an internal network's container has a default route: %s", r)
	}
	if err := a.Ping(sandbox.UpstreamAddr); err == nil {
		t.Error("internal network reached the upstream")
	}

	// A container's macvlan deleted behind ctnet's back, then the parent
	// itself: reconcile makes each again, and a sound host stays as it is.
	a.MustRun("ip", "link", "del", "eth0")
	e := s.MustCtnet("system", "reconcile")
	if !strings.Contains(e, "reconnected") || !strings.Contains(e, "its macvlan eth0 was missing") {
		t.Errorf("reconcile after eth0 was deleted: %s", e)
	}
	s.Host.MustRun("ip", "link", "del", parent)
	e = s.MustCtnet("system", "reconcile")
	if !strings.Contains(e, "recreated parent "+parent) || strings.Count(e, "reconnected") != 2 {
		t.Errorf("reconcile after the parent was deleted: %s", e)
	}
	if err := a.Ping("10.77.5.3"); err != nil {
		t.Errorf("after reconcile: %v", err)
	}
	if e = s.MustCtnet("system", "reconcile"); strings.Contains(e, "macvlan") || strings.Contains(e, parent) {
		t.Errorf("reconcile of a sound host: %s", e)
	}
	// A parent ctnet made that no network owns is removed.
	s.Host.MustRun("ip", "link", "add", "dm-stray", "type", "bridge")
	s.Host.MustRun("ip", "link", "set", "dm-stray", "alias", "ctnet macvlan 000000000000")
	if e = s.MustCtnet("system", "reconcile"); !strings.Contains(e, "deleted bridge dm-stray: no network owns it") {
		t.Errorf("reconcile with a stray parent: %s", e)
	}
	s.MustCtnet("network", "disconnect", "iso", "--netns", a.NetPath())
	s.MustCtnet("network", "disconnect", "iso", "--netns", b.NetPath())
	s.MustCtnet("network", "rm", "iso")
	if out, err := s.Host.Run("ip", "link", "show", parent); err == nil {
		t.Errorf("the bridge outlived its network: %s", out)
	}
}
