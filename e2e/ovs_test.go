package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/ovsdb/ovstest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// ovsEnv is a sandbox with a private Open vSwitch (ovsdb-server and
// ovs-vswitchd in the sandbox host, their sockets in a temp dir) that ctnet
// finds through OVS_RUNDIR, as ovs-vsctl would.
type ovsEnv struct {
	*sandbox.Sandbox
	t   testing.TB
	ovs *ovstest.OVS
}

func newOVSEnv(t testing.TB) *ovsEnv {
	t.Helper()
	ovstest.Require(t)
	s := sandbox.New(t)
	return &ovsEnv{Sandbox: s, t: t, ovs: ovstest.Start(t, s.Host)}
}

func (e *ovsEnv) ctnet(args ...string) (string, string, error) {
	e.t.Helper()
	cmd := e.Host.Command(sandbox.Binary(e.t), args...)
	cmd.Env = append(e.Env(), "OVS_RUNDIR="+e.ovs.Dir)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	return o.String(), er.String(), err
}

func (e *ovsEnv) must(args ...string) string {
	e.t.Helper()
	o, er, err := e.ctnet(args...)
	if err != nil {
		e.t.Fatalf("ctnet %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, o, er)
	}
	return o
}

func TestOVSNetwork(t *testing.T) {
	t.Parallel()
	e := newOVSEnv(t)
	e.must("network", "create", "-d", "ovs", "--subnet", "10.70.0.0/24", "sw")
	a, b := e.Netns(), e.Netns()
	e.must("network", "connect", "sw", "--netns", a.NetPath())
	e.must("network", "connect", "sw", "--netns", b.NetPath())
	out := e.must("network", "inspect", "-f", `{{index .Options "ovs.bridge"}} {{index .Options "ovs.datapath"}}`, "sw")
	if strings.TrimSpace(out) != "ctnet-ovs netdev" {
		t.Errorf("inspect: bridge and datapath %q, want ctnet-ovs netdev (no openvswitch module here)", out)
	}
	t.Log(e.ovs.MustVsctl("show"))
	for _, c := range []struct {
		from *sandbox.NS
		to   string
	}{{a, "10.70.0.3"}, {b, "10.70.0.2"}, {a, "10.70.0.1"}, {e.Host, "10.70.0.2"}, {a, sandbox.UpstreamAddr}, {b, sandbox.FarAddr}} {
		if err := c.from.Ping(c.to); err != nil {
			t.Error(err)
		}
	}
	if src := observedSource(t, e.Sandbox, a); src != sandbox.HostAddr {
		t.Errorf("upstream saw source %q, want the host's %s (masquerade)", src, sandbox.HostAddr)
	}
}

func TestOVSContainers(t *testing.T) {
	t.Parallel()
	e := newOVSEnv(t)
	withBusybox(t, e.Sandbox)
	e.must("network", "create", "-d", "ovs", "--subnet", "10.70.1.0/24", "app")
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=30", "--internal", "--subnet", "10.70.2.0/24", "sealed")
	e.must("run", "-d", "--name", "web", "--network", "app", "-p", "8080:80", "-p", "127.0.0.1:8081:80", "host",
		"sh", "-c", "socat TCP-LISTEN:81,fork,reuseaddr SYSTEM:'wc -c' & exec socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo hello'")
	e.must("run", "-d", "--name", "db", "--network", "app", "host", "sleep", "600")
	waitFor(t, func() bool {
		out, _, _ := e.ctnet("exec", "web", "socat", "-T1", "-", "TCP:127.0.0.1:80")
		return strings.Contains(out, "hello")
	}, "web to listen")

	// Names: the embedded resolver answers for the network's containers.
	if out := e.must("run", "--rm", "--network", "app", "busybox", "nslookup", "web"); !strings.Contains(out, "10.70.1.2") {
		t.Errorf("web by name:\n%s", out)
	}
	// Published ports, from the outside, the host's loopback and a sibling
	// (hairpin through the gateway port).
	for _, c := range []struct {
		from       *sandbox.NS
		addr, port string
	}{{e.Upstream, sandbox.HostAddr, "8080"}, {e.Host, "127.0.0.1", "8081"}, {e.Host, sandbox.HostAddr, "8080"}} {
		if got := tcpGet(c.from, c.addr, c.port); got != "hello" {
			t.Errorf("%s:%s from ns %d: %q", c.addr, c.port, c.from.PID, got)
		}
	}
	if out, _, _ := e.ctnet("exec", "db", "socat", "-T2", "-", "TCP:"+sandbox.HostAddr+":8080,connect-timeout=2"); strings.TrimSpace(out) != "hello" {
		t.Errorf("a sibling through the host's published port: %q", out)
	}
	// An unpublished port is not reachable from outside, even routed.
	e.Upstream.MustRun("ip", "route", "add", "10.70.1.0/24", "via", sandbox.HostAddr)
	if got := tcpGet(e.Upstream, "10.70.1.2", "80"); got == "hello" {
		t.Errorf("the container's own port answered from outside: %q", got)
	}
	// --internal: its containers reach each other, not the outside nor
	// another network.
	e.must("run", "-d", "--name", "s1", "--network", "sealed", "busybox", "sleep", "600")
	e.must("run", "-d", "--name", "s2", "--network", "sealed", "busybox", "sleep", "600")
	if _, er, err := e.ctnet("exec", "s1", "ping", "-c1", "-W2", "10.70.2.3"); err != nil {
		t.Errorf("within the internal network: %v %s", err, er)
	}
	for _, to := range []string{sandbox.UpstreamAddr, "10.70.1.2"} {
		if _, _, err := e.ctnet("exec", "s1", "ping", "-c1", "-W1", to); err == nil {
			t.Errorf("the internal network reached %s", to)
		}
	}
	// Networks are isolated from each other as on the Linux bridge.
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=40", "--subnet", "10.70.3.0/24", "other")
	e.must("run", "-d", "--name", "o1", "--network", "other", "busybox", "sleep", "600")
	if _, _, err := e.ctnet("exec", "o1", "ping", "-c1", "-W1", "10.70.1.3"); err == nil {
		t.Error("a container of another network reached db")
	}
	// TCP streams through the userspace datapath both ways (checksums).
	if out, _, _ := e.ctnet("exec", "db", "sh", "-c", "head -c 2000000 /dev/zero | socat -t5 -T5 - TCP:10.70.1.2:81"); strings.TrimSpace(out) != "2000000" {
		t.Errorf("a 2 MB stream to web: %q", out)
	}
	ps := e.must("ovs", "show")
	for _, w := range []string{`Bridge ctnet-ovs`, "datapath_type: netdev", "tag: 30", "tag: 40", "type: internal"} {
		if !strings.Contains(ps, w) {
			t.Errorf("ovs show lacks %q:\n%s", w, ps)
		}
	}
	// Removing everything leaves no port and no bridge ctnet made.
	e.must("rm", "-f", "web", "db", "s1", "s2", "o1")
	e.must("network", "rm", "app", "sealed", "other")
	if br := e.ovs.MustVsctl("list-br"); strings.TrimSpace(br) != "" {
		t.Errorf("bridges left: %s", br)
	}
	if out := e.Host.MustRun("ip", "-o", "link"); strings.Contains(out, "veth") || strings.Count(out, "ovs-") != strings.Count(out, "ovs-netdev") || strings.Contains(out, "ctnet-ovs") {
		t.Errorf("links left:\n%s", out)
	}
}

// onLink gives ns an extra address in another subnet and pings to there, so
// only L2 (the VLAN) decides whether the packet arrives: no router between.
func onLink(t *testing.T, ns *sandbox.NS, extra, to string) error {
	t.Helper()
	ns.MustRun("ip", "addr", "replace", extra, "dev", "eth0")
	defer ns.MustRun("ip", "addr", "del", extra, "dev", "eth0")
	return ns.Ping(to)
}

func TestOVSVLANs(t *testing.T) {
	t.Parallel()
	e := newOVSEnv(t)
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=10", "--subnet", "10.71.0.0/24", "v10")
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=20", "--subnet", "10.72.0.0/24", "v20")
	a, b, c := e.Netns(), e.Netns(), e.Netns()
	e.must("network", "connect", "v10", "--netns", a.NetPath())
	e.must("network", "connect", "v20", "--netns", b.NetPath())
	e.must("network", "connect", "v20", "--netns", c.NetPath())
	if tag := strings.TrimSpace(e.ovs.MustVsctl("get", "port", "veth"+strings.TrimSpace(e.must("network", "inspect", "-f", "{{range .Containers}}{{.EndpointID}}{{end}}", "v10"))[:7], "tag")); tag != "10" {
		t.Errorf("the endpoint's port of v10 has tag %q", tag)
	}
	// One bridge, two VLANs: c reaches b on the segment, a does not.
	if err := onLink(t, c, "10.72.0.98/24", "10.72.0.2"); err != nil {
		t.Errorf("same VLAN: %v", err)
	}
	if err := onLink(t, a, "10.72.0.99/24", "10.72.0.2"); err == nil {
		t.Error("VLAN 10 reached VLAN 20 on one bridge")
	}
	if _, er, err := e.ctnet("network", "create", "-d", "ovs", "-o", "ovs.vlan=10", "--subnet", "10.75.0.0/24", "v10b"); err == nil || !strings.Contains(er, `network "v10" already has VLAN 10 on OVS bridge ctnet-ovs`) {
		t.Errorf("a second network on VLAN 10: %v %s", err, er)
	}

	// The same VLAN on a second bridge, linked to the first by a patch pair.
	e.must("network", "create", "-d", "ovs", "-o", "ovs.bridge=ctnet-ovs2", "-o", "ovs.vlan=10", "--subnet", "10.73.0.0/24", "far10")
	e.must("network", "create", "-d", "ovs", "-o", "ovs.bridge=ctnet-ovs2", "-o", "ovs.vlan=20", "--subnet", "10.74.0.0/24", "far20")
	y, z := e.Netns(), e.Netns()
	e.must("network", "connect", "far10", "--netns", y.NetPath())
	e.must("network", "connect", "far20", "--netns", z.NetPath())
	if err := onLink(t, y, "10.71.0.99/24", "10.71.0.2"); err == nil {
		t.Error("two bridges without a link reached each other")
	}
	e.ovs.MustVsctl("add-port", "ctnet-ovs", "patch-a", "--", "set", "interface", "patch-a", "type=patch", "options:peer=patch-b",
		"--", "add-port", "ctnet-ovs2", "patch-b", "--", "set", "interface", "patch-b", "type=patch", "options:peer=patch-a")
	e.ovs.Sync()
	if err := onLink(t, y, "10.71.0.99/24", "10.71.0.2"); err != nil {
		t.Errorf("VLAN 10 across the patch pair: %v", err)
	}
	if err := onLink(t, z, "10.72.0.97/24", "10.72.0.2"); err != nil {
		t.Errorf("VLAN 20 across the patch pair: %v", err)
	}
	if err := onLink(t, z, "10.71.0.98/24", "10.71.0.2"); err == nil {
		t.Error("VLAN 20 reached VLAN 10 across the patch pair")
	}
	// A bridge ctnet made stays while a port that is not ctnet's is on it.
	for _, ns := range []*sandbox.NS{y, z} {
		ns.Kill()
	}
	e.must("system", "reconcile")
	e.must("network", "rm", "far10", "far20")
	if br := e.ovs.MustVsctl("list-br"); !strings.Contains(br, "ctnet-ovs2") {
		t.Errorf("ctnet-ovs2 went with its networks though patch-b is on it: %s", br)
	}
}

func TestOVSReconcile(t *testing.T) {
	t.Parallel()
	e := newOVSEnv(t)
	e.must("network", "create", "-d", "ovs", "-o", "ovs.vlan=10", "--subnet", "10.76.0.0/24", "sw")
	a, b := e.Netns(), e.Netns()
	hostIf := map[*sandbox.NS]string{}
	for _, ns := range []*sandbox.NS{a, b} {
		f := strings.Fields(e.must("network", "connect", "sw", "--netns", ns.NetPath()))
		hostIf[ns] = f[len(f)-1]
	}
	portOf := func(ns *sandbox.NS) string { return hostIf[ns] }
	gw := "ovs-" + strings.TrimSpace(e.must("network", "inspect", "-f", "{{.Id}}", "sw"))[:11]
	works := func(what string) {
		t.Helper()
		for _, c := range []struct {
			from *sandbox.NS
			to   string
		}{{a, "10.76.0.3"}, {b, sandbox.FarAddr}, {e.Host, "10.76.0.2"}} {
			if err := c.from.Ping(c.to); err != nil {
				t.Errorf("%s: %v", what, err)
			}
		}
		if out := e.must("system", "reconcile"); out != "" {
			t.Errorf("%s: a second reconcile found more:\n%s", what, out)
		}
	}
	reconcile := func(want ...string) {
		t.Helper()
		out := e.must("system", "reconcile")
		for _, w := range want {
			if !strings.Contains(out, w) {
				t.Errorf("reconcile output lacks %q:\n%s", w, out)
			}
		}
	}
	works("at first")

	// A port deleted behind ctnet's back.
	pa := portOf(a)
	e.ovs.MustVsctl("del-port", pa)
	reconcile("put veth " + pa + " of " + a.NetPath() + " back on OVS bridge ctnet-ovs")
	works("after a port was deleted")
	// The gateway port, then the veth.
	e.ovs.MustVsctl("del-port", gw)
	reconcile("recreated the gateway port on OVS bridge ctnet-ovs of network \"sw\"")
	works("after the gateway port was deleted")
	e.Host.MustRun("ip", "addr", "flush", "dev", gw)
	reconcile("gateway address 10.76.0.1/24 was missing")
	works("after the gateway lost its address")
	e.Host.MustRun("ip", "link", "del", portOf(b))
	reconcile("its veth", "was missing")
	works("after a veth was deleted")
	// The whole bridge.
	e.ovs.MustVsctl("del-br", "ctnet-ovs")
	reconcile("recreated OVS bridge ctnet-ovs of network \"sw\"", "back on OVS bridge ctnet-ovs")
	works("after the bridge was deleted")
	if tag := strings.TrimSpace(e.ovs.MustVsctl("get", "port", portOf(a), "tag")); tag != "10" {
		t.Errorf("tag after the bridge was made again: %q", tag)
	}
	// ovsdb-server started again on an empty database.
	e.ovs.RestartDB()
	reconcile("recreated OVS bridge ctnet-ovs of network \"sw\"")
	works("after ovsdb-server lost its database")
	// What no network owns goes: a port with ctnet's marks, then the
	// gateway port and bridge of a network removed behind the service.
	e.ovs.MustVsctl("add-port", "ctnet-ovs", "vethdead000", "--", "set", "port", "vethdead000", "external_ids:ctnet-network=x", "external_ids:ctnet-endpoint=y")
	reconcile("deleted port vethdead000 of OVS bridge ctnet-ovs: no endpoint owns it")
	e.ovs.MustVsctl("add-br", "ctnet-stray", "--", "set", "bridge", "ctnet-stray", "datapath_type=netdev", "external_ids:ctnet-made=true",
		"--", "add-port", "ctnet-stray", "ovs-deadbeef000", "--", "set", "interface", "ovs-deadbeef000", "type=internal",
		"--", "set", "port", "ovs-deadbeef000", "external_ids:ctnet-network=gone")
	reconcile("deleted gateway port ovs-deadbeef000 of OVS bridge ctnet-stray: no network owns it", "deleted OVS bridge ctnet-stray: no network uses it")
	works("at the end")
}
