package netx

import (
	"errors"
	"fmt"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
	"golang.org/x/sys/unix"
)

func TestValidIfName(t *testing.T) {
	for _, tc := range []struct {
		name string
		ok   bool
	}{
		{"eth0", true},
		{"veth1a2b3c4", true},
		{"abcdefghijklmno", true},
		{"abcdefghijklmnop", false},
		{"", false},
		{"a/b", false},
		{"a b", false},
		{"..", false},
	} {
		if err := ValidIfName(tc.name); (err == nil) != tc.ok {
			t.Errorf("ValidIfName(%q) = %v, want ok=%v", tc.name, err, tc.ok)
		}
	}
}

func TestBridgeMAC(t *testing.T) {
	m := BridgeMAC("ctnet0")
	if m[0]&0x02 == 0 || m[0]&0x01 != 0 {
		t.Errorf("BridgeMAC = %s, want locally administered unicast", m)
	}
	if !slices.Equal(m, BridgeMAC("ctnet0")) || slices.Equal(m, BridgeMAC("ctnet1")) {
		t.Errorf("BridgeMAC not a function of the name")
	}
}

func TestEnsureBridge(t *testing.T) {
	needRoot(t)
	_, h := newNS(t)
	v4, v6 := mustCIDR(t, "10.88.0.1/16"), mustCIDR(t, "fd00:88::1/64")

	for _, step := range []struct {
		name string
		mtu  int
	}{
		{"create", 1500},
		{"again", 1500},
		{"mtu corrected", 1400},
	} {
		l, err := EnsureBridge(h, "nxbr0", step.mtu, []*net.IPNet{v4, v6})
		if err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if _, ok := l.(*netlink.Bridge); !ok {
			t.Fatalf("%s: got a %s", step.name, l.Type())
		}
		a := l.Attrs()
		if a.MTU != step.mtu || a.Flags&net.FlagUp == 0 || !slices.Equal(a.HardwareAddr, BridgeMAC("nxbr0")) {
			t.Errorf("%s: mtu %d up %v mac %s; want %d, up, %s", step.name, a.MTU, a.Flags&net.FlagUp != 0, a.HardwareAddr, step.mtu, BridgeMAC("nxbr0"))
		}
		addrs, err := h.AddrList(l, netlink.FAMILY_ALL)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, ad := range addrs {
			if !ad.IP.IsLinkLocalUnicast() {
				got = append(got, ad.IPNet.String())
			}
		}
		slices.Sort(got)
		if want := []string{"10.88.0.1/16", "fd00:88::1/64"}; !slices.Equal(got, want) {
			t.Errorf("%s: addresses %v, want %v", step.name, got, want)
		}
	}

	bs, err := Bridges(h, "nxbr0")
	if err != nil {
		t.Fatal(err)
	}
	wantID := "8000." + strings.ReplaceAll(BridgeMAC("nxbr0").String(), ":", "")
	if bs[0].ID != wantID || bs[0].STP {
		t.Errorf("bridge id %s stp %v, want %s, no", bs[0].ID, bs[0].STP, wantID)
	}

	t.Run("conflicting address", func(t *testing.T) {
		if _, err := EnsureBridge(h, "nxbr0", 1400, []*net.IPNet{mustCIDR(t, "10.88.0.1/24")}); err == nil {
			t.Error("EnsureBridge with 10.88.0.1/24 over 10.88.0.1/16 succeeded")
		}
	})
	t.Run("not a bridge", func(t *testing.T) {
		addLink(t, h, "nxveth0", 1500)
		if _, err := EnsureBridge(h, "nxveth0", 1500, nil); err == nil || !strings.Contains(err.Error(), "not a bridge") {
			t.Errorf("EnsureBridge over a dummy: %v", err)
		}
	})
	t.Run("name too long", func(t *testing.T) {
		if _, err := EnsureBridge(h, "nx-much-too-long0", 1500, nil); err == nil {
			t.Error("accepted a 17-byte name")
		}
	})
	t.Run("delete idempotent", func(t *testing.T) {
		for range 2 {
			if err := DeleteLink(h, "nxbr0"); err != nil {
				t.Fatal(err)
			}
		}
		if l, err := LinkOrNil(h, "nxbr0"); l != nil || err != nil {
			t.Errorf("after delete: %v, %v", l, err)
		}
	})
}

// ipv6Disabled reads net.ipv6.conf.<ifname>.disable_ipv6 in ns.
func ipv6Disabled(t *testing.T, ns netns.NsHandle, ifname string) bool {
	t.Helper()
	var b []byte
	err := inNamespaces(func(enter func(netns.NsHandle) error) error {
		if err := enter(ns); err != nil {
			return err
		}
		var err error
		b, err = os.ReadFile("/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6")
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b)) == "1"
}

func TestAddVeth(t *testing.T) {
	needRoot(t)
	for _, tc := range []struct {
		name     string
		mac      net.HardwareAddr
		v6off    bool
		noMaster bool
	}{
		{name: "plain"},
		{name: "mac and ipv6 off", mac: net.HardwareAddr{0x02, 0x42, 0x0a, 0x58, 0x00, 0x02}, v6off: true},
		{name: "no master", noMaster: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			hostNS, h := newNS(t)
			ctrNS, ch := newNS(t)
			br, err := EnsureBridge(h, "nxbr0", 1400, nil)
			if err != nil {
				t.Fatal(err)
			}
			s := VethSpec{HostName: "nxveth0abc", PeerName: "eth0", PeerNS: ctrNS, MTU: 1400, MasterIndex: br.Attrs().Index, PeerMAC: tc.mac, DisableIPv6: tc.v6off}
			if tc.noMaster {
				s.MasterIndex = 0
			}
			if err := AddVeth(h, s); err != nil {
				t.Fatal(err)
			}
			host := mustLink(t, h, "nxveth0abc")
			ha := host.Attrs()
			if ha.Flags&net.FlagUp == 0 || ha.MTU != 1400 || ha.MasterIndex != s.MasterIndex {
				t.Errorf("host end: up %v mtu %d master %d; want up, 1400, %d", ha.Flags&net.FlagUp != 0, ha.MTU, ha.MasterIndex, s.MasterIndex)
			}
			if l, _ := LinkOrNil(h, "eth0"); l != nil {
				t.Error("peer eth0 is in the host namespace")
			}
			peer := mustLink(t, ch, "eth0")
			pa := peer.Attrs()
			if pa.MTU != 1400 || (tc.mac != nil && !slices.Equal(pa.HardwareAddr, tc.mac)) {
				t.Errorf("peer: mtu %d mac %s; want 1400, %v", pa.MTU, pa.HardwareAddr, tc.mac)
			}
			if peer.Type() != "veth" || pa.ParentIndex != ha.Index || ha.ParentIndex != pa.Index {
				t.Errorf("peer: type %s parent %d, host index %d: not each other's peer", peer.Type(), pa.ParentIndex, ha.Index)
			}
			if got := ipv6Disabled(t, hostNS, s.HostName); got != tc.v6off {
				t.Errorf("host end disable_ipv6 = %v, want %v", got, tc.v6off)
			}
			if got := ipv6Disabled(t, ctrNS, s.PeerName); got != tc.v6off {
				t.Errorf("peer disable_ipv6 = %v, want %v", got, tc.v6off)
			}
			if tc.v6off {
				// Even with carrier on both ends no IPv6 address appears.
				if err := ch.LinkSetUp(peer); err != nil {
					t.Fatal(err)
				}
				for _, hl := range []struct {
					h *Handle
					l netlink.Link
				}{{h, host}, {ch, peer}} {
					if as, _ := hl.h.AddrList(hl.l, netlink.FAMILY_V6); len(as) != 0 {
						t.Errorf("%s has IPv6 addresses %v", hl.l.Attrs().Name, as)
					}
				}
			}

			// A second AddVeth with the same host name fails and leaves nothing new behind.
			ctr2, ch2 := newNS(t)
			s2 := s
			s2.PeerNS = ctr2
			if err := AddVeth(h, s2); !errors.Is(err, unix.EEXIST) {
				t.Errorf("duplicate AddVeth: %v, want EEXIST", err)
			}
			if l, _ := LinkOrNil(ch2, "eth0"); l != nil {
				t.Error("failed AddVeth left eth0 in the second container")
			}
			if err := DeleteLink(h, s.HostName); err != nil {
				t.Fatal(err)
			}
			if l, _ := LinkOrNil(ch, "eth0"); l != nil {
				t.Error("deleting the host end left the peer")
			}
		})
	}
	t.Run("bad names", func(t *testing.T) {
		_, h := newNS(t)
		ctr, _ := newNS(t)
		for _, s := range []VethSpec{
			{HostName: "nxveth-too-long-x", PeerName: "eth0", PeerNS: ctr},
			{HostName: "nxv0", PeerName: "", PeerNS: ctr},
			{HostName: "nxv0", PeerName: "eth0", PeerNS: netns.None()},
		} {
			if err := AddVeth(h, s); err == nil {
				t.Errorf("AddVeth(%+v) succeeded", s)
			}
		}
	})
}

// sandbox is a host namespace with bridge nxbr0 (10.99.0.1/24, fd00:99::1/64)
// and containers attached to it.
type sandbox struct {
	h  *Handle
	br netlink.Link
}

type container struct {
	ns netns.NsHandle
	h  *Handle
}

func newSandbox(t *testing.T) *sandbox {
	t.Helper()
	_, h := newNS(t)
	br, err := EnsureBridge(h, "nxbr0", 1500, []*net.IPNet{mustCIDR(t, "10.99.0.1/24"), mustCIDR(t, "fd00:99::1/64")})
	if err != nil {
		t.Fatal(err)
	}
	return &sandbox{h: h, br: br}
}

func (sb *sandbox) attach(t *testing.T, hostName string, cfg IfaceConfig) container {
	t.Helper()
	ns, ch := newNS(t)
	if err := AddVeth(sb.h, VethSpec{HostName: hostName, PeerName: cfg.Name, PeerNS: ns, MTU: 1500, MasterIndex: sb.br.Attrs().Index}); err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second run must change nothing and not fail
		if err := ConfigureIface(ch, cfg); err != nil {
			t.Fatal(err)
		}
	}
	return container{ns: ns, h: ch}
}

func TestConfigureIface(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	cfg := IfaceConfig{
		Name:     "eth0",
		Addrs:    []*net.IPNet{mustCIDR(t, "10.99.0.2/24"), mustCIDR(t, "fd00:99::2/64")},
		Gateway4: net.ParseIP("10.99.0.1"),
		Gateway6: net.ParseIP("fd00:99::1"),
	}
	c := sb.attach(t, "nxva", cfg)

	lo := mustLink(t, c.h, "lo")
	eth := mustLink(t, c.h, "eth0")
	if lo.Attrs().Flags&net.FlagUp == 0 || eth.Attrs().Flags&net.FlagUp == 0 {
		t.Errorf("lo up %v, eth0 up %v", lo.Attrs().Flags&net.FlagUp != 0, eth.Attrs().Flags&net.FlagUp != 0)
	}
	addrs, err := c.h.AddrList(eth, netlink.FAMILY_ALL)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		got = append(got, a.IPNet.String())
		if a.IP.To4() == nil && a.Flags&unix.IFA_F_TENTATIVE != 0 {
			t.Errorf("%s is tentative; want NODAD", a.IPNet)
		}
	}
	slices.Sort(got)
	if want := []string{"10.99.0.2/24", "fd00:99::2/64"}; !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := c.h.RouteList(eth, fam)
		if err != nil {
			t.Fatal(err)
		}
		var gws []string
		for _, r := range routes {
			if r.Gw != nil && (r.Dst == nil || r.Dst.IP.IsUnspecified()) {
				gws = append(gws, r.Gw.String())
			}
		}
		want := map[int]string{netlink.FAMILY_V4: "10.99.0.1", netlink.FAMILY_V6: "fd00:99::1"}[fam]
		if !slices.Equal(gws, []string{want}) {
			t.Errorf("family %d default routes via %v, want [%s]", fam, gws, want)
		}
	}
	if err := ConfigureIface(c.h, IfaceConfig{Name: "eth9"}); err == nil {
		t.Error("ConfigureIface on a missing link succeeded")
	}
}

func TestPingThroughBridge(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	a := sb.attach(t, "nxva", IfaceConfig{Name: "eth0", Addrs: []*net.IPNet{mustCIDR(t, "10.99.0.2/24"), mustCIDR(t, "fd00:99::2/64")}, Gateway4: net.ParseIP("10.99.0.1")})
	sb.attach(t, "nxvb", IfaceConfig{Name: "eth0", Addrs: []*net.IPNet{mustCIDR(t, "10.99.0.3/24"), mustCIDR(t, "fd00:99::3/64")}, Gateway4: net.ParseIP("10.99.0.1")})
	for _, dst := range []string{"10.99.0.3", "10.99.0.1", "fd00:99::3", "fd00:99::1"} {
		t.Run(dst, func(t *testing.T) {
			if err := ping(a.ns, net.ParseIP(dst)); err != nil {
				t.Error(err)
			}
		})
	}
	t.Run("nobody there", func(t *testing.T) {
		// Proves ping can fail: no container has 10.99.0.9.
		if err := ping(a.ns, net.ParseIP("10.99.0.9")); err == nil {
			t.Error("echo reply from an address nobody has")
		}
	})
}

// ping sends one ICMP echo from namespace ns to dst and waits for the reply.
// The socket is opened inside ns; once open it stays bound to that namespace.
func ping(ns netns.NsHandle, dst net.IP) error {
	network, proto := "ip4:icmp", 1
	var typ icmp.Type = ipv4.ICMPTypeEcho
	if dst.To4() == nil {
		network, proto, typ = "ip6:ipv6-icmp", 58, ipv6.ICMPTypeEchoRequest
	}
	var conn *icmp.PacketConn
	err := inNamespaces(func(enter func(netns.NsHandle) error) error {
		if err := enter(ns); err != nil {
			return err
		}
		var err error
		conn, err = icmp.ListenPacket(network, "")
		return err
	})
	if err != nil {
		return fmt.Errorf("open icmp socket: %w", err)
	}
	defer conn.Close()
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: os.Getpid() & 0xffff, Seq: 1, Data: []byte("ctnet-netx")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	// Neighbour discovery may drop the first echo; retry a few times.
	for try := 0; try < 3; try++ {
		if _, err := conn.WriteTo(b, &net.IPAddr{IP: dst}); err != nil {
			return fmt.Errorf("send echo to %s: %w", dst, err)
		}
		conn.SetReadDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 1500)
		for {
			n, from, err := conn.ReadFrom(buf)
			if err != nil {
				break
			}
			rm, err := icmp.ParseMessage(proto, buf[:n])
			if err != nil {
				continue
			}
			if e, ok := rm.Body.(*icmp.Echo); ok && (rm.Type == ipv4.ICMPTypeEchoReply || rm.Type == ipv6.ICMPTypeEchoReply) &&
				e.ID == os.Getpid()&0xffff && from.(*net.IPAddr).IP.Equal(dst) {
				return nil
			}
		}
	}
	return fmt.Errorf("no echo reply from %s", dst)
}

func TestNextIfName(t *testing.T) {
	needRoot(t)
	sb := newSandbox(t)
	c := sb.attach(t, "nxva", IfaceConfig{Name: "eth0"})
	for _, want := range []string{"eth1", "eth2"} {
		got, err := NextIfName(c.h, "eth")
		if err != nil || got != want {
			t.Fatalf("NextIfName = %q, %v; want %q", got, err, want)
		}
		addLink(t, c.h, want, 1500)
	}
	if _, err := NextIfName(c.h, "much-too-long-x"); err == nil {
		t.Error("NextIfName with a 15-byte prefix succeeded")
	}
}

func TestHostPrefixes(t *testing.T) {
	needRoot(t)
	_, h := newNS(t)
	d := addLink(t, h, "nxwg0", 1420)
	for _, a := range []string{"198.51.100.7/24", "fd00:51::7/64"} {
		if err := h.AddrAdd(d, &netlink.Addr{IPNet: mustCIDR(t, a), Flags: unix.IFA_F_NODAD}); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		dst   string
		table int
	}{
		{"0.0.0.0/1", unix.RT_TABLE_MAIN},
		{"128.0.0.0/1", unix.RT_TABLE_MAIN},
		{"0.0.0.0/0", unix.RT_TABLE_MAIN},
		{"10.66.0.0/16", 100},
		{"::/0", unix.RT_TABLE_MAIN},
		{"2001:db8:77::/48", 100},
	} {
		_, dst, _ := net.ParseCIDR(r.dst)
		if err := h.RouteAdd(&netlink.Route{LinkIndex: d.Attrs().Index, Dst: dst, Table: r.table}); err != nil {
			t.Fatalf("route %s table %d: %v", r.dst, r.table, err)
		}
	}
	got, err := HostPrefixes(h)
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, p := range got {
		have[p.String()] = true
	}
	for _, want := range []string{"198.51.100.0/24", "fd00:51::/64", "0.0.0.0/1", "128.0.0.0/1", "10.66.0.0/16", "2001:db8:77::/48"} {
		if !have[want] {
			t.Errorf("HostPrefixes lacks %s; got %v", want, got)
		}
	}
	for _, bad := range []string{"0.0.0.0/0", "::/0", "ff00::/8"} {
		if have[bad] {
			t.Errorf("HostPrefixes has %s", bad)
		}
	}
}

func TestDefaultRouteMTU(t *testing.T) {
	needRoot(t)
	_, h := newNS(t)
	if got, err := DefaultRouteMTU(h); err != nil || got != 1500 {
		t.Errorf("no default route: %d, %v; want 1500", got, err)
	}
	up := addLink(t, h, "nxup0", 1420)
	other := addLink(t, h, "nxup1", 9000)
	for _, r := range []*netlink.Route{
		{LinkIndex: up.Attrs().Index, Dst: mustNet(t, "0.0.0.0/0"), Priority: 10},
		{LinkIndex: other.Attrs().Index, Dst: mustNet(t, "0.0.0.0/0"), Priority: 20},
		{LinkIndex: other.Attrs().Index, Dst: mustNet(t, "0.0.0.0/1")},
	} {
		if err := h.RouteAdd(r); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := DefaultRouteMTU(h); err != nil || got != 1420 {
		t.Errorf("DefaultRouteMTU = %d, %v; want 1420", got, err)
	}
}

func mustNet(tb testing.TB, s string) *net.IPNet {
	tb.Helper()
	_, n, err := net.ParseCIDR(s)
	if err != nil {
		tb.Fatal(err)
	}
	return n
}
