package ovsdb

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// link is what `ip -j -d link` says of a device.
type link struct {
	Name     string `json:"ifname"`
	MTU      int    `json:"mtu"`
	Address  string `json:"address"`
	Flags    []string
	LinkInfo struct {
		Kind string `json:"info_kind"`
	} `json:"linkinfo"`
}

func links(t *testing.T, ns *sandbox.NS) map[string]link {
	t.Helper()
	var ls []link
	if err := json.Unmarshal([]byte(ns.MustRun("ip", "-j", "-d", "link", "show")), &ls); err != nil {
		t.Fatal(err)
	}
	m := map[string]link{}
	for _, l := range ls {
		m[l.Name] = l
	}
	return m
}

// container is a namespace whose eth0 is a veth peer of host in the sandbox.
type container struct {
	*sandbox.NS
	host string
	addr string
}

func (e *env) container(t *testing.T, host, addr string) *container {
	t.Helper()
	ns := e.s.Netns()
	e.s.Host.MustRun("ip", "link", "add", host, "mtu", "1400", "type", "veth", "peer", "name", "eth0", "mtu", "1400", "netns", strconv.Itoa(ns.PID))
	e.s.Host.MustRun("ip", "link", "set", host, "up")
	ns.MustRun("ip", "addr", "add", addr+"/24", "dev", "eth0")
	ns.MustRun("ip", "link", "set", "eth0", "up")
	ns.MustRun("ip", "link", "set", "lo", "up")
	return &container{NS: ns, host: host, addr: addr}
}

func (e *env) mustSync(t *testing.T) {
	t.Helper()
	if err := e.c.Sync(ctx(t)); err != nil {
		t.Fatal(err)
	}
}

func (e *env) mustBridge(t *testing.T, spec BridgeSpec) {
	t.Helper()
	if err := e.c.EnsureBridge(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
}

func (e *env) mustPort(t *testing.T, spec PortSpec) {
	t.Helper()
	if err := e.c.AddPort(ctx(t), spec); err != nil {
		t.Fatal(err)
	}
}

// dump is every row of the tables the helpers write, to prove that
// something changed nothing.
func (e *env) dump(t *testing.T) string {
	t.Helper()
	res, err := e.c.Transact(ctx(t), DB, Select{Table: "Open_vSwitch"}, Select{Table: "Bridge"},
		Select{Table: "Port"}, Select{Table: "Interface"})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range res[0].Rows { // ovs-vswitchd's own bookkeeping
		for _, col := range []string{"_version", "cur_cfg", "next_cfg", "statistics"} {
			delete(r, col)
		}
	}
	for _, rs := range res[1:] {
		for _, r := range rs.Rows {
			delete(r, "_version")
			delete(r, "statistics")
		}
	}
	b, _ := json.Marshal(res)
	return string(b)
}

// transfer sends n bytes over TCP from one namespace to addr:port, served
// in another, and returns how many arrived.
func transfer(t *testing.T, from, to *sandbox.NS, addr string, port int) int {
	return transferWithin(t, from, to, addr, port, 10)
}

// transferWithin is transfer that gives up after secs seconds.
func transferWithin(t *testing.T, from, to *sandbox.NS, addr string, port, secs int) int {
	t.Helper()
	const n = 1 << 18
	lis := to.Command("sh", "-c", fmt.Sprintf("timeout %d socat -u TCP-LISTEN:%d,reuseaddr - | wc -c", secs+5, port))
	var out bytes.Buffer
	lis.Stdout = &out
	if err := lis.Start(); err != nil {
		t.Fatal(err)
	}
	from.Run("sh", "-c", fmt.Sprintf("head -c %d /dev/zero | timeout %d socat -u - TCP:%s:%d,retry=50,interval=0.1", n, secs, addr, port))
	lis.Wait()
	got, _ := strconv.Atoi(strings.TrimSpace(out.String()))
	return got
}

func TestBridgeNetdev(t *testing.T) {
	e := newEnv(t, true)
	sys, err := e.c.System(ctx(t))
	if err != nil {
		t.Fatal(err)
	}
	if sys.OVSVersion == "" || !containsStr(sys.DatapathTypes, DatapathNetdev) || !containsStr(sys.IfaceTypes, "internal") ||
		!containsStr(sys.IfaceTypes, "patch") {
		t.Errorf("system facts: %+v", sys)
	}
	kernel, err := KernelDatapath()
	t.Logf("ovs %s, datapath types %v, kernel datapath %v (%v)", sys.OVSVersion, sys.DatapathTypes, kernel, err)

	spec := BridgeSpec{Name: "ovsbr0", DatapathType: DatapathNetdev, ExternalIDs: map[string]string{"ctnet-network": "n1"}}
	e.mustBridge(t, spec)
	e.mustSync(t)
	if err := e.c.CheckInterfaces(ctx(t), "ovsbr0"); err != nil {
		t.Fatal(err)
	}
	l, ok := links(t, e.s.Host)["ovsbr0"]
	if !ok || l.LinkInfo.Kind != "tun" {
		t.Fatalf("kernel device ovsbr0: %+v (present %v)", l, ok)
	}
	if _, ok := links(t, e.s.Host)["ovs-netdev"]; !ok {
		t.Errorf("no ovs-netdev tap for the userspace datapath")
	}
	before := e.dump(t)
	e.mustBridge(t, spec) // again: nothing to do
	if after := e.dump(t); after != before {
		t.Errorf("ensuring an existing bridge changed the database")
	}
	e.mustBridge(t, BridgeSpec{Name: "ovsbr0", DatapathType: DatapathNetdev, ExternalIDs: map[string]string{"other": "x"}})
	bs, err := e.c.Bridges(ctx(t), "ovsbr0")
	if err != nil {
		t.Fatal(err)
	}
	b := bs[0]
	if b.DatapathType != DatapathNetdev || b.ExternalIDs["ctnet-network"] != "n1" || b.ExternalIDs["other"] != "x" ||
		len(b.Ports) != 1 || b.Ports[0].Name != "ovsbr0" || b.Ports[0].Interfaces[0].Type != "internal" {
		t.Errorf("bridge: %+v", b)
	}
	if sys, _ := e.c.System(ctx(t)); sys.OtherConfig["userspace-tso-enable"] != "true" {
		t.Errorf("other_config %v", sys.OtherConfig)
	}
	before = e.dump(t)
	for _, dp := range []string{"", DatapathSystem} {
		err := e.c.EnsureBridge(ctx(t), BridgeSpec{Name: "ovsbr0", DatapathType: dp})
		if err == nil || !strings.Contains(err.Error(), `datapath type "netdev"`) {
			t.Errorf("ensure with datapath %q: %v", dp, err)
		}
	}
	if e.dump(t) != before {
		t.Errorf("a refused ensure changed the database")
	}
	if err := e.c.DeleteBridge(ctx(t), "ovsbr0"); err != nil {
		t.Fatal(err)
	}
	e.mustSync(t)
	if _, ok := links(t, e.s.Host)["ovsbr0"]; ok {
		t.Errorf("ovsbr0 still in the kernel after delete")
	}
	if err := e.c.DeleteBridge(ctx(t), "ovsbr0"); err != nil {
		t.Errorf("deleting a missing bridge: %v", err)
	}
	e.emptyDB(t)
}

// emptyDB checks that no bridge, port or interface is left.
func (e *env) emptyDB(t *testing.T) {
	t.Helper()
	res, err := e.c.Transact(ctx(t), DB, Select{Table: "Bridge"}, Select{Table: "Port"}, Select{Table: "Interface"})
	if err != nil {
		t.Fatal(err)
	}
	for i, tbl := range []string{"Bridge", "Port", "Interface"} {
		if len(res[i].Rows) > 0 {
			t.Errorf("%d rows left in %s: %v", len(res[i].Rows), tbl, res[i].Rows)
		}
	}
}

func containsStr(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// TestSystemDatapathWithoutModule: where the kernel has no openvswitch
// module, a system bridge is accepted by the database but ovs-vswitchd
// cannot make it; CheckInterfaces says so.
func TestSystemDatapathWithoutModule(t *testing.T) {
	if ok, err := KernelDatapath(); ok || err != nil {
		t.Skipf("the kernel has the openvswitch datapath (%v)", err)
	}
	e := newEnv(t, true)
	e.mustBridge(t, BridgeSpec{Name: "sysbr"})
	e.mustSync(t)
	err := e.c.CheckInterfaces(ctx(t), "sysbr")
	if err == nil || !strings.Contains(err.Error(), "sysbr") {
		t.Fatalf("CheckInterfaces of a system bridge without the module: %v", err)
	}
	t.Log(err)
	if _, ok := links(t, e.s.Host)["sysbr"]; ok {
		t.Errorf("a system bridge without the module made a device")
	}
	if err := e.c.DeleteBridge(ctx(t), "sysbr"); err != nil {
		t.Fatal(err)
	}
}

const gwMAC = "02:42:0a:14:00:01"

// TestPortsCarryPackets: two namespaces on one netdev bridge through veth
// pairs ping and stream TCP to each other and to a gateway on an internal
// port; on different VLANs they cannot reach each other; deleting
// everything leaves nothing in the database or the kernel.
func TestPortsCarryPackets(t *testing.T) {
	e := newEnv(t, true)
	e.mustBridge(t, BridgeSpec{Name: "ovsbr0", DatapathType: DatapathNetdev})
	a := e.container(t, "vetha", "10.20.0.2")
	b := e.container(t, "vethb", "10.20.0.3")
	for _, c := range []*container{a, b} {
		e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: c.host, ExternalIDs: map[string]string{"ctnet-endpoint": c.host}})
	}
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: "ovsgw0", Type: "internal", MTU: 1400, MAC: gwMAC})
	e.mustSync(t)
	if err := e.c.CheckInterfaces(ctx(t), "vetha", "vethb", "ovsgw0"); err != nil {
		t.Fatal(err)
	}
	ls := links(t, e.s.Host)
	if gw := ls["ovsgw0"]; gw.LinkInfo.Kind != "tun" || gw.MTU != 1400 || gw.Address != gwMAC {
		t.Errorf("gateway device: %+v", gw)
	}
	// Without an mtu_request, an internal port takes the smallest MTU of the
	// bridge's other ports (the veths' 1400 here).
	if br := ls["ovsbr0"]; br.MTU != 1400 {
		t.Errorf("bridge device MTU %d, want the veths' 1400", br.MTU)
	}
	e.s.Host.MustRun("ip", "addr", "replace", "10.20.0.1/24", "dev", "ovsgw0")
	e.s.Host.MustRun("ip", "link", "set", "ovsgw0", "up")
	for _, p := range [][2]*container{{a, b}, {b, a}} {
		if err := p[0].Ping(p[1].addr); err != nil {
			t.Error(err)
		}
	}
	if err := a.Ping("10.20.0.1"); err != nil {
		t.Error(err)
	}
	if err := e.s.Host.Ping(b.addr); err != nil {
		t.Error(err)
	}
	const n = 1 << 18
	if got := transfer(t, a.NS, b.NS, b.addr, 7001); got != n {
		t.Errorf("TCP a→b: %d of %d bytes", got, n)
	}
	if got := transfer(t, a.NS, e.s.Host, "10.20.0.1", 7002); got != n {
		t.Errorf("TCP a→gateway: %d of %d bytes", got, n)
	}
	// show, with ovs-vswitchd's facts in, still matches ovs-vsctl
	if got, want := showOf(t, e), e.ovs.MustVsctl("show"); got != want {
		t.Errorf("WriteShow:\n%s\novs-vsctl show:\n%s", got, want)
	}

	// VLANs: re-attach with tags
	for _, c := range []*container{a, b} {
		if err := e.c.DeletePort(ctx(t), "ovsbr0", c.host); err != nil {
			t.Fatal(err)
		}
	}
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: a.host, Tag: Tag(10)})
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: b.host, Tag: Tag(20)})
	e.mustSync(t)
	if err := a.Ping(b.addr); err == nil {
		t.Errorf("VLAN 10 reached VLAN 20")
	}
	if err := b.Ping(a.addr); err == nil {
		t.Errorf("VLAN 20 reached VLAN 10")
	}
	if err := a.Ping("10.20.0.1"); err == nil {
		t.Errorf("VLAN 10 reached an untagged gateway (it gets the frames tagged, and drops them)")
	}
	if err := e.c.DeletePort(ctx(t), "ovsbr0", b.host); err != nil {
		t.Fatal(err)
	}
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: b.host, Tag: Tag(10)})
	e.mustSync(t)
	if err := a.Ping(b.addr); err != nil {
		t.Errorf("same VLAN: %v", err)
	}
	if got := transfer(t, b.NS, a.NS, a.addr, 7003); got != n {
		t.Errorf("TCP b→a on VLAN 10: %d of %d bytes", got, n)
	}
	// the gateway must be on the network's VLAN too
	if err := e.c.DeletePort(ctx(t), "ovsbr0", "ovsgw0"); err != nil {
		t.Fatal(err)
	}
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: "ovsgw0", Type: "internal", Tag: Tag(10), MTU: 1400, MAC: gwMAC})
	e.mustSync(t)
	e.s.Host.MustRun("ip", "addr", "replace", "10.20.0.1/24", "dev", "ovsgw0")
	e.s.Host.MustRun("ip", "link", "set", "ovsgw0", "up")
	if err := a.Ping("10.20.0.1"); err != nil {
		t.Errorf("VLAN 10 to a gateway on VLAN 10: %v", err)
	}
	bs, err := e.c.Bridges(ctx(t), "ovsbr0")
	if err != nil {
		t.Fatal(err)
	}
	tags := map[string]string{}
	for _, p := range bs[0].Ports {
		tags[p.Name] = "-"
		if p.Tag != nil {
			tags[p.Name] = strconv.Itoa(*p.Tag)
		}
	}
	if fmt.Sprint(tags) != "map[ovsbr0:- ovsgw0:10 vetha:10 vethb:10]" {
		t.Errorf("tags: %v", tags)
	}

	// delete everything
	for _, p := range []string{"vetha", "vethb", "ovsgw0"} {
		if err := e.c.DeletePort(ctx(t), "", p); err != nil {
			t.Fatal(err)
		}
		if err := e.c.DeletePort(ctx(t), "", p); err != nil {
			t.Errorf("deleting %s twice: %v", p, err)
		}
	}
	e.mustSync(t)
	if _, ok := links(t, e.s.Host)["ovsgw0"]; ok {
		t.Error("ovsgw0 left in the kernel")
	}
	if err := e.c.DeleteBridge(ctx(t), "ovsbr0"); err != nil {
		t.Fatal(err)
	}
	e.mustSync(t)
	e.emptyDB(t)
	ls = links(t, e.s.Host)
	for name, l := range ls {
		if l.LinkInfo.Kind == "tun" && name != "ovs-netdev" {
			t.Errorf("tap %s left in the kernel", name)
		}
	}
	if _, ok := ls["ovs-netdev"]; ok {
		t.Log("the userspace datapath's ovs-netdev tap stays after its last bridge")
	}
	if _, ok := ls["vetha"]; !ok {
		t.Error("the veth end went with its port; it belongs to its creator")
	}
}

// TestPatchPortsCarryVLAN: two bridges joined by a patch pair (untagged,
// so a trunk) carry VLAN 100 from one to the other, and keep VLAN 200
// apart.
func TestPatchPortsCarryVLAN(t *testing.T) {
	e := newEnv(t, true)
	for _, br := range []string{"ovsa", "ovsb"} {
		e.mustBridge(t, BridgeSpec{Name: br, DatapathType: DatapathNetdev})
	}
	e.mustPort(t, PortSpec{Bridge: "ovsa", Name: "patch-ab", Type: "patch", Peer: "patch-ba"})
	e.mustPort(t, PortSpec{Bridge: "ovsb", Name: "patch-ba", Type: "patch", Peer: "patch-ab"})
	a := e.container(t, "veth1", "10.30.0.2")
	b := e.container(t, "veth2", "10.30.0.3")
	c := e.container(t, "veth3", "10.30.0.4")
	e.mustPort(t, PortSpec{Bridge: "ovsa", Name: "veth1", Tag: Tag(100)})
	e.mustPort(t, PortSpec{Bridge: "ovsb", Name: "veth2", Tag: Tag(100)})
	e.mustPort(t, PortSpec{Bridge: "ovsb", Name: "veth3", Tag: Tag(200)})
	e.mustSync(t)
	if err := e.c.CheckInterfaces(ctx(t), "patch-ab", "patch-ba", "veth1", "veth2", "veth3"); err != nil {
		t.Fatal(err)
	}
	if err := a.Ping(b.addr); err != nil {
		t.Errorf("VLAN 100 across the patch: %v", err)
	}
	if got := transfer(t, a.NS, b.NS, b.addr, 7004); got != 1<<18 {
		t.Errorf("TCP across the patch: %d bytes", got)
	}
	if err := a.Ping(c.addr); err == nil {
		t.Errorf("VLAN 100 reached VLAN 200 across the patch")
	}
	if _, ok := links(t, e.s.Host)["patch-ab"]; ok {
		t.Errorf("a patch port made a kernel device")
	}
	for _, br := range []string{"ovsa", "ovsb"} {
		if err := e.c.DeleteBridge(ctx(t), br); err != nil {
			t.Fatal(err)
		}
	}
	e.mustSync(t)
	e.emptyDB(t)
}

// TestNetdevTCPNeedsTSO: with userspace-tso-enable off, the userspace
// datapath passes ping but not TCP between veths (the segments' checksums
// are left for an offload that never happens) — why EnsureBridge turns the
// key on. An administrator's explicit "false" is left alone.
func TestNetdevTCPNeedsTSO(t *testing.T) {
	e := newEnv(t, true)
	if _, err := e.c.Transact(ctx(t), DB, Mutate{Table: "Open_vSwitch",
		Mutations: []Mutation{Mut("other_config", "insert", Map{"userspace-tso-enable": "false"})}}); err != nil {
		t.Fatal(err)
	}
	e.mustBridge(t, BridgeSpec{Name: "ovsbr0", DatapathType: DatapathNetdev})
	if sys, _ := e.c.System(ctx(t)); sys.OtherConfig["userspace-tso-enable"] != "false" {
		t.Fatalf("EnsureBridge overrode the administrator's userspace-tso-enable=false: %v", sys.OtherConfig)
	}
	a := e.container(t, "vetha", "10.20.0.2")
	b := e.container(t, "vethb", "10.20.0.3")
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: a.host})
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: b.host})
	e.mustSync(t)
	if err := a.Ping(b.addr); err != nil {
		t.Fatal(err)
	}
	if got := transferWithin(t, a.NS, b.NS, b.addr, 7010, 3); got == 1<<18 {
		t.Errorf("TCP went through the userspace datapath without TSO support: drop the workaround from EnsureBridge's doc")
	}
}

// TestSwitchRestart: the userspace datapath forwards only while
// ovs-vswitchd runs; its taps outlive it, and a new ovs-vswitchd takes the
// bridge up again from the database. A database emptied under a running
// ovs-vswitchd makes it remove its bridges' devices, not the veths.
func TestSwitchRestart(t *testing.T) {
	e := newEnv(t, true)
	e.mustBridge(t, BridgeSpec{Name: "ovsbr0", DatapathType: DatapathNetdev})
	a := e.container(t, "vetha", "10.20.0.2")
	b := e.container(t, "vethb", "10.20.0.3")
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: a.host})
	e.mustPort(t, PortSpec{Bridge: "ovsbr0", Name: b.host})
	e.mustSync(t)
	if err := a.Ping(b.addr); err != nil {
		t.Fatal(err)
	}
	e.ovs.KillSwitch()
	if err := a.Ping(b.addr); err == nil {
		t.Error("packets crossed a userspace bridge whose ovs-vswitchd is dead")
	}
	if _, ok := links(t, e.s.Host)["ovsbr0"]; !ok {
		t.Error("the bridge's tap went with ovs-vswitchd")
	}
	e.ovs.StartSwitch()
	if err := a.Ping(b.addr); err != nil {
		t.Errorf("after ovs-vswitchd came back: %v", err)
	}
	e.ovs.RestartDB()
	e.c.Close()
	c, err := Dial(ctx(t), e.ovs.Socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	e.c = c
	e.mustSync(t)
	ls := links(t, e.s.Host)
	if _, ok := ls["ovsbr0"]; ok {
		t.Error("ovsbr0 survived the database that named it")
	}
	if _, ok := ls["vetha"]; !ok {
		t.Error("vetha went with the database")
	}
	if err := a.Ping(b.addr); err == nil {
		t.Error("packets crossed a bridge that is gone")
	}
}
