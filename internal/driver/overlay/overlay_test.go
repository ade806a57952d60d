package overlay

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"

	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/sandbox"
)

var ctx = context.Background()

// testHost is a sandbox host with the overlay driver over its namespace.
type testHost struct {
	s    *sandbox.Sandbox
	h    *netx.Handle
	d    *Driver
	reg  *driver.Registry
	addr netip.Addr
}

func handleOf(t *testing.T, pid int) *netx.Handle {
	t.Helper()
	ns, err := netns.GetFromPid(pid)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netx.Open(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(h.Close)
	return h
}

// twoHosts makes two sandbox hosts whose eth1 share an underlay link
// (198.51.100.11 and .12, MTU 1500).
func twoHosts(t *testing.T) [2]*testHost {
	t.Helper()
	var hs [2]*testHost
	for i := range hs {
		s := sandbox.New(t)
		h := handleOf(t, s.Host.PID)
		sh := driver.NewShared(h, s.Cgroup)
		t.Cleanup(func() { sh.Close() })
		d := New(sh)
		addr := netip.MustParseAddr(fmt.Sprintf("198.51.100.%d", 11+i))
		d.SetHost(driver.Host{ID: fmt.Sprintf("host%d", i), Addr: addr})
		hs[i] = &testHost{s: s, h: h, d: d, reg: driver.NewRegistry(sh, d), addr: addr}
	}
	hs[0].s.Host.MustRun("ip", "link", "add", "eth1", "type", "veth", "peer", "name", "eth1", "netns", strconv.Itoa(hs[1].s.Host.PID))
	for _, th := range hs {
		th.s.Host.MustRun("ip", "addr", "add", th.addr.String()+"/24", "dev", "eth1")
		th.s.Host.MustRun("ip", "link", "set", "eth1", "up")
		th.reconcile(t, driver.State{}) // the firewall's tables
	}
	return hs
}

func (th *testHost) reconcile(t *testing.T, st driver.State) []string {
	t.Helper()
	var lines []string
	err := th.reg.Reconcile(ctx, func() (map[string]driver.State, error) {
		return map[string]driver.State{"overlay": st}, nil
	}, func(f string, a ...any) { lines = append(lines, fmt.Sprintf(f, a...)) })
	if err != nil {
		t.Fatal(err)
	}
	return lines
}

type sb struct {
	path string
	h    *netx.Handle
}

func (s sb) Path() string         { return s.path }
func (s sb) Handle() *netx.Handle { return s.h }

const netID = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"

func endpoint(i int) driver.Endpoint {
	ip := netip.MustParseAddr(fmt.Sprintf("10.200.0.%d", i))
	return driver.Endpoint{
		ID:       fmt.Sprintf("%02d%s", i, netID[2:]),
		IfName:   "eth0",
		MAC:      net.HardwareAddr{2, 0x42, 10, 200, 0, byte(i)},
		Addrs:    []netip.Prefix{netip.PrefixFrom(ip, 24)},
		Gateways: []netip.Addr{netip.MustParseAddr("10.200.0.1")},
	}
}

func peer(ep driver.Endpoint, host netip.Addr) driver.Peer {
	return driver.Peer{MAC: ep.MAC, Addrs: []netip.Addr{ep.Addrs[0].Addr()}, Host: host}
}

// pingOK pings with a few tries: the first ARP of a fresh path may be lost.
func pingOK(ns *sandbox.NS, addr string) error {
	var err error
	for range 3 {
		if err = ns.Ping(addr); err == nil {
			return nil
		}
	}
	return err
}

func TestOverlay(t *testing.T) {
	sandbox.RequireRoot(t)
	hs := twoHosts(t)
	a, b := hs[0], hs[1]
	n := driver.Network{ID: netID, Name: "ov", Options: map[string]string{},
		Subnets: []driver.Subnet{{Prefix: netip.MustParsePrefix("10.200.0.0/24"), Gateway: netip.MustParseAddr("10.200.0.1")}}}
	if err := a.d.PlanNetwork(&n, []driver.Network{{Name: "other", Options: map[string]string{OptVNI: "4097"}}}); err != nil {
		t.Fatal(err)
	}
	if n.Options[OptVNI] != "4098" || n.MTU != 1450 || n.Device != "ov-0123456789ab" {
		t.Fatalf("planned %+v", n)
	}
	if err := a.d.CreateNetwork(ctx, n); err != nil {
		t.Fatal(err)
	}
	if links := a.s.Host.MustRun("ip", "-o", "link"); strings.Contains(links, "ov-") {
		t.Errorf("network create made links before any endpoint:\n%s", links)
	}

	// One container on each host.
	var eps [2]driver.Endpoint
	var ctrs [2]*sandbox.NS
	for i, th := range hs {
		ctrs[i] = th.s.Netns()
		eps[i] = endpoint(2 + i)
		if err := th.d.CreateEndpoint(n, &eps[i]); err != nil {
			t.Fatal(err)
		}
		if err := th.d.Join(ctx, n, eps[i], sb{ctrs[i].NetPath(), handleOf(t, ctrs[i].PID)}); err != nil {
			t.Fatal(err)
		}
	}

	// The device as the issue asks: VNI, port, learning off, proxy, the
	// host's address, MTU 1500-50, a port of the local bridge.
	var links []struct {
		Ifname, Master string
		MTU            int
		Linkinfo       struct {
			Kind string          `json:"info_kind"`
			Data json.RawMessage `json:"info_data"`
		}
	}
	if err := json.Unmarshal([]byte(a.s.Host.MustRun("ip", "-d", "-j", "link", "show", "vx-0123456789ab")), &links); err != nil || len(links) != 1 {
		t.Fatalf("ip -d -j link: %v", err)
	}
	var info struct {
		ID       int    `json:"id"`
		Local    string `json:"local"`
		Port     int    `json:"port"`
		Learning bool   `json:"learning"`
		Proxy    bool   `json:"proxy"`
	}
	json.Unmarshal(links[0].Linkinfo.Data, &info)
	if l := links[0]; l.Linkinfo.Kind != "vxlan" || l.Master != "ov-0123456789ab" || l.MTU != 1450 ||
		info.ID != 4098 || info.Local != "198.51.100.11" || info.Port != 4789 || info.Learning || !info.Proxy {
		t.Errorf("vxlan device: %+v %+v\n%s", l, info, a.s.Host.MustRun("ip", "-d", "link", "show", "vx-0123456789ab"))
	}
	if out := ctrs[0].MustRun("ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450") {
		t.Errorf("container's eth0: %s", out)
	}

	// Nothing crosses before the peers are known, everything after.
	if err := ctrs[0].Ping("10.200.0.3"); err == nil {
		t.Errorf("ping across before the peers were programmed")
	}
	var log []string
	logf := func(f string, args ...any) { log = append(log, fmt.Sprintf(f, args...)) }
	if err := a.d.SyncPeers(ctx, n, []driver.Peer{peer(eps[1], b.addr)}, logf); err != nil {
		t.Fatal(err)
	}
	if err := b.d.SyncPeers(ctx, n, []driver.Peer{peer(eps[0], a.addr)}, logf); err != nil {
		t.Fatal(err)
	}
	if len(log) != 2 {
		t.Errorf("sync said %q", log)
	}
	for i, dst := range []string{"10.200.0.3", "10.200.0.2"} {
		if err := pingOK(ctrs[i], dst); err != nil {
			t.Error(err)
		}
	}
	if out := a.s.Host.MustRun("bridge", "fdb", "show", "dev", "vx-0123456789ab"); !strings.Contains(out, "02:42:0a:c8:00:03 dst 198.51.100.12 self permanent") ||
		!strings.Contains(out, "02:42:0a:c8:00:03 master ov-0123456789ab static") {
		t.Errorf("fdb:\n%s", out)
	}
	if out := a.s.Host.MustRun("ip", "neigh", "show", "dev", "vx-0123456789ab"); !strings.Contains(out, "10.200.0.3 lladdr 02:42:0a:c8:00:03 PERMANENT") {
		t.Errorf("neighbours:\n%s", out)
	}
	// The same again changes nothing.
	log = nil
	if err := a.d.SyncPeers(ctx, n, []driver.Peer{peer(eps[1], b.addr)}, logf); err != nil || len(log) != 0 {
		t.Errorf("second sync: %v %q", err, log)
	}

	// NAT out through the container's own host; its gateway is local.
	if err := pingOK(ctrs[1], sandbox.UpstreamAddr); err != nil {
		t.Error(err)
	}
	var br []struct{ Address string }
	json.Unmarshal([]byte(b.s.Host.MustRun("ip", "-j", "link", "show", n.Device)), &br)
	if out := ctrs[1].MustRun("ip", "neigh", "show", "10.200.0.1"); len(br) != 1 || !strings.Contains(out, br[0].Address) {
		t.Errorf("the gateway is not the local bridge: %s (bridge %+v)", out, br)
	}

	// A peer that moved to another host, then one that is gone.
	log = nil
	moved := peer(eps[1], netip.MustParseAddr("198.51.100.99"))
	if err := a.d.SyncPeers(ctx, n, []driver.Peer{moved}, logf); err != nil {
		t.Fatal(err)
	}
	if out := a.s.Host.MustRun("bridge", "fdb", "show", "dev", "vx-0123456789ab"); !strings.Contains(out, "dst 198.51.100.99") || strings.Contains(out, "dst 198.51.100.12") {
		t.Errorf("fdb after the move:\n%s", out)
	}
	if err := a.d.SyncPeers(ctx, n, nil, logf); err != nil {
		t.Fatal(err)
	}
	if out := a.s.Host.MustRun("ip", "neigh", "show", "dev", "vx-0123456789ab"); strings.TrimSpace(out) != "" {
		t.Errorf("neighbours left: %s", out)
	}
	if err := ctrs[0].Ping("10.200.0.3"); err == nil {
		t.Errorf("ping across after the peer was dropped")
	}
	if out := a.s.Host.MustRun("bridge", "fdb", "show", "dev", "vx-0123456789ab"); strings.Contains(out, "02:42:0a:c8:00:03") {
		t.Errorf("entries of the dropped peer left:\n%s", out)
	}
	// Its address (and so its MAC) taken by a container on this host: the
	// bridge forwards to it, not to the tunnel.
	local := endpoint(3)
	local.ID = "77" + netID[2:]
	ctr := a.s.Netns()
	if err := a.d.CreateEndpoint(n, &local); err != nil {
		t.Fatal(err)
	}
	if err := a.d.Join(ctx, n, local, sb{ctr.NetPath(), handleOf(t, ctr.PID)}); err != nil {
		t.Fatal(err)
	}
	if err := pingOK(ctrs[0], "10.200.0.3"); err != nil {
		t.Errorf("to the address's new holder on the same host: %v", err)
	}
	if err := a.d.Leave(ctx, n, local, false); err != nil {
		t.Fatal(err)
	}

	// Reconcile: a device deleted behind ctnet's back comes back; without
	// endpoints the network's kernel side goes.
	ep0 := eps[0]
	ep0.NetNS = ctrs[0].NetPath()
	st := driver.State{Networks: []driver.NetworkState{{Network: n, Endpoints: []driver.EndpointState{{Endpoint: ep0}}}}}
	if lines := a.reconcile(t, st); len(lines) != 0 {
		t.Errorf("reconcile of a sound host: %q", lines)
	}
	a.s.Host.MustRun("ip", "link", "del", "vx-0123456789ab")
	if lines := a.reconcile(t, st); len(lines) != 1 || !strings.Contains(lines[0], "recreated vxlan vx-0123456789ab") {
		t.Errorf("reconcile after the device was deleted: %q", lines)
	}
	a.s.Host.MustRun("ip", "link", "set", "vx-0123456789ab", "nomaster")
	if lines := a.reconcile(t, st); len(lines) != 1 || !strings.Contains(lines[0], "off its bridge") {
		t.Errorf("reconcile after the device left its bridge: %q", lines)
	}
	idle := driver.State{Networks: []driver.NetworkState{{Network: n}}}
	if lines := a.reconcile(t, idle); len(lines) == 0 || !strings.Contains(strings.Join(lines, "\n"), "removed bridge ov-0123456789ab and vxlan vx-0123456789ab") {
		t.Errorf("reconcile without endpoints: %q", lines)
	}
	if out := a.s.Host.MustRun("ip", "-o", "link"); strings.Contains(out, "ov-") || strings.Contains(out, "vx-") {
		t.Errorf("links left:\n%s", out)
	}
	// A network that is gone: its leftovers go too.
	if err := b.d.ensure(ctx, n); err != nil {
		t.Fatal(err)
	}
	if lines := b.reconcile(t, driver.State{}); !strings.Contains(strings.Join(lines, "\n"), "deleted vxlan vx-0123456789ab") {
		t.Errorf("reconcile of a removed network: %q", lines)
	}
	if out := b.s.Host.MustRun("ip", "-o", "link"); strings.Contains(out, "ov-") || strings.Contains(out, "vx-") {
		t.Errorf("links left on b:\n%s", out)
	}
}

func TestPlanNetwork(t *testing.T) {
	d := &Driver{}
	n := driver.Network{ID: netID, Options: map[string]string{}}
	if err := d.PlanNetwork(&n, nil); err == nil || !strings.Contains(err.Error(), "--store etcd://") {
		t.Errorf("without a cluster: %v", err)
	}
	d.SetHost(driver.Host{ID: "h", Addr: netip.MustParseAddr("198.51.100.11")})
	for _, c := range []struct {
		opts map[string]string
		want string
	}{
		{map[string]string{"com.docker.network.bridge.name": "x"}, "unknown option"},
		{map[string]string{OptVNI: "0"}, "want one VNI"},
		{map[string]string{OptVNI: "16777216"}, "want one VNI"},
		{map[string]string{OptVNI: "4097,4098"}, "want one VNI"},
		{map[string]string{OptVNI: "012"}, "want one VNI"},
		{map[string]string{OptVNI: "-1"}, "want one VNI"},
		{map[string]string{OptVNI: "100"}, "VNI 100 is already used by network \"a\""},
		{map[string]string{OptVNI: "5000", OptMTU: "67"}, "want a number from 68"},
		{map[string]string{OptVNI: "5000", OptMTU: "x"}, "want a number from 68"},
	} {
		n := driver.Network{ID: netID, Options: c.opts}
		err := d.PlanNetwork(&n, []driver.Network{{Name: "a", Options: map[string]string{OptVNI: "100"}}})
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("options %v: %v, want %q", c.opts, err, c.want)
		}
	}
	n = driver.Network{ID: netID, Options: map[string]string{OptVNI: "5000", OptMTU: "1400"}}
	if err := d.PlanNetwork(&n, nil); err != nil || n.MTU != 1400 || n.Options[OptVNI] != "5000" {
		t.Errorf("given VNI and MTU: %v %+v", err, n)
	}
	if c := d.Claims(n); len(c) != 1 || c[0] != "VNI 5000" {
		t.Errorf("claims %v", c)
	}
}
