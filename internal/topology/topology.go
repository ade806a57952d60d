// Package topology is the picture of a host's container network as the
// kernel holds it, next to what ctnet's store says it should be: the uplink,
// each network's bridge, each veth pair as host end ↔ inner interface with
// the peer indexes `ip link` shows (vethX@if7), who owns it, its addresses,
// MAC and published ports, what the firewall tables say of each network
// (masquerade, isolation, --internal) and every difference between the two
// (drift). Foreign bridges (docker0, …) are shown as such. It renders the
// picture as text, JSON, DOT, SVG and a self-contained HTML page.
//
// Gathering reads only: netlink dumps, nftables element lists, sysctls.
package topology

import (
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Topology is one host's container network.
type Topology struct {
	Host     Host      `json:"host"`
	Networks []Network `json:"networks"`
	// Foreign are bridges that no ctnet network owns (docker0, lxcbr0, …).
	Foreign []Bridge `json:"foreign_bridges,omitempty"`
	Tables  *Tables  `json:"tables"`
	// Drift is every difference between the kernel and the store.
	Drift []Drift `json:"drift,omitempty"`
}

// Host is the host namespace's way out.
type Host struct {
	Uplink     string   `json:"uplink,omitempty"` // the device of the IPv4 default route
	Index      int      `json:"index,omitempty"`
	MAC        string   `json:"mac,omitempty"`
	MTU        int      `json:"mtu,omitempty"`
	Addrs      []string `json:"addrs,omitempty"`
	Gateway    string   `json:"gateway,omitempty"`
	Gateway6   string   `json:"gateway6,omitempty"`
	Forwarding bool     `json:"ip_forward"`
}

// Network is one ctnet network: the store's definition and the kernel's
// facts side by side.
type Network struct {
	Name     string   `json:"name"`
	ID       string   `json:"id"`
	Driver   string   `json:"driver"`
	Subnets  []string `json:"subnets"`
	Internal bool     `json:"internal"`
	IPv6     bool     `json:"ipv6"`
	Pending  string   `json:"pending,omitempty"`
	// What the firewall table holds for the bridge (not what the store
	// asks: a difference is in Drift).
	InTable      bool `json:"in_table"`
	Masquerade   bool `json:"masquerade"`
	ICC          bool `json:"icc"`
	Routed       bool `json:"routed_ingress"`
	AntiSpoofing bool `json:"anti_spoofing"`
	// PublishedIPv6 is the private /64 through which an IPv4-only network's
	// containers take IPv6 clients of their published ports (in dnat6_bridges).
	PublishedIPv6 string `json:"published_ipv6,omitempty"`
	// Bridge is the kernel's device, nil when it is missing.
	Bridge    *Bridge    `json:"bridge"`
	Device    string     `json:"device"`
	Endpoints []Endpoint `json:"endpoints"`
}

// Bridge is a bridge device as the kernel has it.
type Bridge struct {
	Name          string   `json:"name"`
	Index         int      `json:"index"`
	MAC           string   `json:"mac"`
	MTU           int      `json:"mtu"`
	Up            bool     `json:"up"`
	Addrs         []string `json:"addrs,omitempty"`
	Alias         string   `json:"alias,omitempty"`
	RouteLocalnet bool     `json:"route_localnet,omitempty"`
	// Ports are the bridge's ports by name (foreign bridges; a ctnet
	// network lists its Endpoints instead).
	Ports []string `json:"ports,omitempty"`
}

// Endpoint is one veth pair: its host end on the bridge and its inner end in
// the owner's namespace.
type Endpoint struct {
	Owner   string `json:"owner"` // `container "web"`, `namespace /run/netns/x`
	Kind    string `json:"kind"`  // container, netns, cni, docker; "" for a veth no one owns
	NetNS   string `json:"netns,omitempty"`
	Pending string `json:"pending,omitempty"`

	HostIf    string `json:"host_if"`
	HostIndex int    `json:"host_index,omitempty"`
	// HostPeer is the index of the inner end, as the kernel reports the
	// peer (`ip link` prints it as vethX@ifN).
	HostPeer int  `json:"host_peer,omitempty"`
	Isolated bool `json:"isolated,omitempty"` // bridge port flag (icc=false)
	Hairpin  bool `json:"hairpin,omitempty"`
	Guarded  bool `json:"guarded,omitempty"` // bound to its MAC and addresses in bridge ctnet

	IfName  string   `json:"ifname"`
	IfIndex int      `json:"if_index,omitempty"`
	IfPeer  int      `json:"if_peer,omitempty"` // the host end's index, as seen from inside
	MAC     string   `json:"mac,omitempty"`
	Addrs   []string `json:"addrs,omitempty"` // from inside the namespace
	Gateway string   `json:"gateway,omitempty"`
	// Ports are the published ports, host side -> container port.
	Ports []string `json:"ports,omitempty"`
}

// HostName is the host end as `ip link` names it: vethX@if7.
func (e Endpoint) HostName() string {
	if e.HostPeer > 0 {
		return fmt.Sprintf("%s@if%d", e.HostIf, e.HostPeer)
	}
	return e.HostIf
}

// InnerName is the inner end as `ip link` inside the namespace names it.
func (e Endpoint) InnerName() string {
	if e.IfPeer > 0 {
		return fmt.Sprintf("%s@if%d", e.IfName, e.IfPeer)
	}
	return e.IfName
}

// Drift is one difference between the kernel and the store.
type Drift struct {
	// Where: "kernel" (the kernel holds what the store does not know),
	// "store" (the store wants what the kernel lacks) or "both" (they
	// disagree).
	Where   string `json:"where"`
	Object  string `json:"object"`
	Problem string `json:"problem"`
}

func (d Drift) String() string { return d.Object + ": " + d.Problem }

// Gather reads the calling thread's namespace (the host, as the network
// service takes it) and the namespaces of v's attachments.
func Gather(v *network.View) (*Topology, error) {
	self, err := namespace.Current()
	if err != nil {
		return nil, err
	}
	defer self.Close()
	h, err := netx.Open(self.Handle)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	tabs, err := ReadTables(int(h.NS()))
	if err != nil {
		return nil, err
	}
	g := &gatherer{h: h, v: v, tabs: tabs, t: &Topology{Tables: tabs}}
	if err := g.gather(); err != nil {
		return nil, err
	}
	return g.t, nil
}

type gatherer struct {
	h      *netx.Handle
	v      *network.View
	tabs   *Tables
	t      *Topology
	links  []netlink.Link
	byName map[string]netlink.Link
	byIdx  map[int]netlink.Link
}

func (g *gatherer) drift(where, object, format string, args ...any) {
	g.t.Drift = append(g.t.Drift, Drift{Where: where, Object: object, Problem: fmt.Sprintf(format, args...)})
}

func (g *gatherer) gather() error {
	links, err := netx.Links(g.h)
	if err != nil {
		return fmt.Errorf("list host links: %w", err)
	}
	g.links, g.byName, g.byIdx = links, map[string]netlink.Link{}, map[int]netlink.Link{}
	for _, l := range links {
		g.byName[l.Attrs().Name] = l
		g.byIdx[l.Attrs().Index] = l
	}
	if err := g.host(); err != nil {
		return err
	}
	owned := map[string]bool{} // bridges of stored networks
	for _, info := range g.v.Networks {
		owned[info.Bridge] = true
		g.t.Networks = append(g.t.Networks, g.network(info))
	}
	g.foreign(owned)
	g.firewallDrift()
	slices.SortStableFunc(g.t.Drift, func(a, b Drift) int { return strings.Compare(a.Object, b.Object) })
	return nil
}

func (g *gatherer) host() error {
	g.t.Host.Forwarding = sysctl(g.h, "/proc/sys/net/ipv4/ip_forward") == "1"
	for _, fam := range []int{netlink.FAMILY_V4, netlink.FAMILY_V6} {
		routes, err := g.h.RouteListFiltered(fam, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
		if err != nil {
			return fmt.Errorf("list routes: %w", err)
		}
		var best *netlink.Route
		for i := range routes {
			r := &routes[i]
			if ones := prefixLen(r.Dst); ones == 0 && r.Type == unix.RTN_UNICAST && (best == nil || r.Priority < best.Priority) {
				best = r
			}
		}
		if best == nil {
			continue
		}
		if fam == netlink.FAMILY_V6 {
			if best.Gw != nil {
				g.t.Host.Gateway6 = best.Gw.String()
			}
			continue
		}
		if best.Gw != nil {
			g.t.Host.Gateway = best.Gw.String()
		}
		if l := g.byIdx[best.LinkIndex]; l != nil {
			a := l.Attrs()
			g.t.Host.Uplink, g.t.Host.Index, g.t.Host.MTU, g.t.Host.MAC = a.Name, a.Index, a.MTU, a.HardwareAddr.String()
			g.t.Host.Addrs = addrs(g.h, l)
		}
	}
	return nil
}

func prefixLen(n *net.IPNet) int {
	if n == nil {
		return 0
	}
	ones, _ := n.Mask.Size()
	return ones
}

// addrs are a link's addresses other than link-local ones.
func addrs(h *netx.Handle, l netlink.Link) []string {
	as, err := netx.Addrs(h, l)
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range as {
		if a.IP.IsLinkLocalUnicast() {
			continue
		}
		out = append(out, a.IPNet.String())
	}
	return out
}

func sysctl(h *netx.Handle, path string) string {
	var v string
	namespace.In(h.NS(), func() error {
		b, err := os.ReadFile(path)
		v = strings.TrimSpace(string(b))
		return err
	})
	return v
}

func (g *gatherer) bridgeOf(l netlink.Link) *Bridge {
	a := l.Attrs()
	b := &Bridge{Name: a.Name, Index: a.Index, MAC: a.HardwareAddr.String(), MTU: a.MTU,
		Up: a.Flags&net.FlagUp != 0, Addrs: addrs(g.h, l), Alias: a.Alias,
		RouteLocalnet: sysctl(g.h, firewall.RouteLocalnetSysctl(a.Name)) == "1"}
	return b
}

func (g *gatherer) network(info network.NetworkInfo) Network {
	n := Network{Name: info.Name, ID: info.ID, Driver: info.Driver, Internal: info.Internal, IPv6: info.IPv6,
		Pending: info.Pending, Device: info.Bridge}
	for _, s := range info.Subnets {
		n.Subnets = append(n.Subnets, s.Subnet.String())
	}
	dev := info.Bridge
	what := fmt.Sprintf("network %q", info.Name)
	n.InTable = g.tabs.Bridges[dev]
	n.Masquerade, n.ICC, n.Routed = g.tabs.Masq[dev], !g.tabs.NoICC[dev], g.tabs.Routed[dev]
	var private6 netip.Prefix // the table's subnet of the bridge that is none of the network's
	if g.tabs.DNAT6[dev] {
		for _, p := range g.tabs.Subnets[dev] {
			if p.Addr().Is6() && !slices.ContainsFunc(info.Subnets, func(s network.Subnet) bool { return s.Subnet == p }) {
				private6, n.PublishedIPv6 = p, p.String()
			}
		}
	}
	if l := g.byName[dev]; l == nil {
		if info.Pending == "" {
			g.drift("store", what, "its bridge %s is missing from the kernel (`ctnet system reconcile` recreates it)", dev)
		}
	} else if _, ok := l.(*netlink.Bridge); !ok {
		g.drift("both", what, "%s is a %s, not a bridge", dev, l.Type())
	} else {
		n.Bridge = g.bridgeOf(l)
		if info.Pending == "" {
			if n.Bridge.MTU != info.MTU {
				g.drift("both", "bridge "+dev, "MTU %d, the store says %d", n.Bridge.MTU, info.MTU)
			}
			if !n.Bridge.Up {
				g.drift("both", "bridge "+dev, "down")
			}
			for _, s := range info.Subnets {
				if !s.Gateway.IsValid() {
					continue
				}
				gw := netip.PrefixFrom(s.Gateway, s.Subnet.Bits()).String()
				if !slices.Contains(n.Bridge.Addrs, gw) {
					g.drift("store", "bridge "+dev, "gateway address %s is missing", gw)
				}
			}
			if gw := netip.PrefixFrom(private6.Addr().Next(), private6.Bits()).String(); private6.IsValid() && !slices.Contains(n.Bridge.Addrs, gw) {
				g.drift("store", "bridge "+dev, "gateway address %s of IPv6 clients of published ports is missing", gw)
			}
		}
	}
	antiSpoofing := info.Options[bridge.OptAntiSpoofing] != "false"
	n.AntiSpoofing = antiSpoofing
	hostIfs := map[string]bool{}
	for _, a := range info.Attachments {
		hostIfs[a.HostIf] = true
		n.Endpoints = append(n.Endpoints, g.endpoint(info, a, n.Bridge))
	}
	// Veths on the bridge that no attachment owns.
	if n.Bridge != nil {
		for _, l := range g.links {
			a := l.Attrs()
			if a.MasterIndex != n.Bridge.Index || hostIfs[a.Name] {
				continue
			}
			ep := Endpoint{Owner: "nobody", HostIf: a.Name, HostIndex: a.Index, HostPeer: a.ParentIndex}
			g.portFlags(l, &ep)
			n.Endpoints = append(n.Endpoints, ep)
			why := "no endpoint in the store owns it"
			if g.v.Keep[a.Name] {
				why = "being made, removed or reclaimed with its namespace"
			}
			g.drift("kernel", a.Name+" on "+dev, "%s", why)
		}
	}
	return n
}

func (g *gatherer) portFlags(l netlink.Link, ep *Endpoint) {
	if pi, err := g.h.LinkGetProtinfo(l); err == nil {
		ep.Isolated, ep.Hairpin = pi.Isolated, pi.Hairpin
	}
	ep.Guarded = g.tabs.Guarded[l.Attrs().Name]
}

func (g *gatherer) endpoint(info network.NetworkInfo, a network.Attachment, br *Bridge) Endpoint {
	ep := Endpoint{Owner: a.Describe(), Kind: string(a.Owner.Kind), NetNS: a.NetNS, Pending: a.Pending,
		HostIf: a.HostIf, IfName: a.IfName, MAC: a.MAC.String()}
	for _, m := range a.Ports {
		ep.Ports = append(ep.Ports, portText(m))
	}
	what := fmt.Sprintf("%s on network %q", a.Describe(), info.Name)
	l := g.byName[a.HostIf]
	switch {
	case l == nil && a.Pending == "":
		g.drift("store", what, "its veth %s is missing from the kernel", a.HostIf)
	case l != nil:
		la := l.Attrs()
		ep.HostIndex, ep.HostPeer = la.Index, la.ParentIndex
		g.portFlags(l, &ep)
		if br != nil && la.MasterIndex != br.Index && a.Pending == "" {
			g.drift("both", a.HostIf, "is not a port of bridge %s", br.Name)
		}
	}
	g.inner(&ep, a, what)
	return ep
}

// inner reads the namespace end of the pair.
func (g *gatherer) inner(ep *Endpoint, a network.Attachment, what string) {
	ns, err := namespace.Open(a.NetNS)
	if err != nil {
		if a.Pending == "" {
			g.drift("store", what, "its namespace %s is gone", a.NetNS)
		}
		return
	}
	defer ns.Close()
	if ns.Key != a.NetNSKey {
		g.drift("store", what, "%s is another namespace now", a.NetNS)
		return
	}
	h, err := netx.Open(ns.Handle)
	if err != nil {
		return
	}
	defer h.Close()
	l, err := netx.LinkOrNil(h, a.IfName)
	if err != nil || l == nil {
		if a.Pending == "" {
			g.drift("store", what, "%s is missing inside %s", a.IfName, a.NetNS)
		}
		return
	}
	la := l.Attrs()
	ep.IfIndex, ep.IfPeer, ep.MAC = la.Index, la.ParentIndex, la.HardwareAddr.String()
	ep.Addrs = addrs(h, l)
	if ep.HostPeer != 0 && ep.HostPeer != la.Index || ep.IfPeer != 0 && ep.HostIndex != 0 && ep.IfPeer != ep.HostIndex {
		g.drift("both", what, "%s and %s are not one veth pair", ep.HostIf, a.IfName)
	}
	if a.Pending != "" {
		return
	}
	for _, p := range a.Addrs() {
		if !slices.Contains(ep.Addrs, p.String()) {
			g.drift("store", what, "address %s is missing on %s", p, a.IfName)
		}
	}
	if !strings.EqualFold(la.HardwareAddr.String(), a.MAC.String()) {
		g.drift("both", what, "%s has MAC %s, the store says %s", a.IfName, la.HardwareAddr, a.MAC)
	}
	if routes, err := h.RouteList(l, netlink.FAMILY_V4); err == nil {
		for _, r := range routes {
			if prefixLen(r.Dst) == 0 && r.Gw != nil {
				ep.Gateway = r.Gw.String()
			}
		}
	}
}

func portText(m portspec.Mapping) string {
	host := m.HostIP
	if !host.IsValid() {
		host = netip.IPv4Unspecified()
	}
	return fmt.Sprintf("%s->%d/%s", netip.AddrPortFrom(host, m.HostPort), m.ContainerPort, m.Proto)
}

// foreign lists bridges no network owns; ctnet's own leftovers (with its
// alias) are drift.
func (g *gatherer) foreign(owned map[string]bool) {
	for _, l := range g.links {
		if _, ok := l.(*netlink.Bridge); !ok || owned[l.Attrs().Name] {
			continue
		}
		b := g.bridgeOf(l)
		for _, p := range g.links {
			if p.Attrs().MasterIndex == b.Index {
				b.Ports = append(b.Ports, p.Attrs().Name)
			}
		}
		if strings.HasPrefix(b.Alias, bridge.AliasPrefix) {
			g.drift("kernel", "bridge "+b.Name, "made by ctnet (%s) but no network owns it", b.Alias)
		}
		g.t.Foreign = append(g.t.Foreign, *b)
	}
}

// firewallDrift compares the tables with what the drivers want.
func (g *gatherer) firewallDrift() {
	t, want := g.tabs, g.v.Filter
	if !t.Inet {
		g.drift("store", "table inet ctnet", "missing (`ctnet system reconcile` rebuilds it)")
	}
	if !t.Bridge {
		g.drift("store", "table bridge ctnet", "missing (`ctnet system reconcile` rebuilds it)")
	}
	if !t.Inet || !t.Bridge {
		return
	}
	bridges := map[string]bool{}
	for _, n := range want.Networks {
		bridges[n.Bridge] = true
		obj := "bridge " + n.Bridge
		flag := func(set string, have map[string]bool, want bool) {
			switch {
			case want && !have[n.Bridge]:
				g.drift("store", obj, "not in set %s of table inet ctnet", set)
			case !want && have[n.Bridge]:
				g.drift("kernel", obj, "in set %s of table inet ctnet, which its network does not ask for", set)
			}
		}
		flag("bridges", t.Bridges, true)
		flag("masq_bridges", t.Masq, n.Masquerade)
		flag("internal_bridges", t.Internal, n.Internal)
		flag("noicc_bridges", t.NoICC, !n.ICC)
		flag("routed_bridges", t.Routed, n.RoutedIngress)
		flag("dnat6_bridges", t.DNAT6, n.PublishedIPv6 != nil)
	}
	for b := range t.Bridges {
		if !bridges[b] {
			g.drift("kernel", "bridge "+b, "in set bridges of table inet ctnet, but no network is on it")
		}
	}
	eps := map[string]bool{}
	for _, e := range want.Endpoints {
		eps[e.Port] = true
		if !t.Endpoints[e.Port] {
			g.drift("store", e.Port, "not in set ports of table bridge ctnet: its frames go unchecked")
		}
	}
	for p := range t.Endpoints {
		if !eps[p] && !g.v.Keep[p] {
			g.drift("kernel", p, "in set ports of table bridge ctnet, but no endpoint is on that port")
		}
	}
	wantPorts := map[string]PortMap{}
	for _, fp := range want.Ports {
		p := FromFirewall(fp)
		wantPorts[p.Key()] = p
	}
	have := map[string]bool{}
	for _, p := range t.Ports {
		have[p.Key()] = true
		w, ok := wantPorts[p.Key()]
		switch {
		case !ok:
			g.drift("kernel", "map "+p.Map, "%s: no published port of the store", p)
		case w.ContainerIP != p.ContainerIP || w.ContainerPort != p.ContainerPort:
			g.drift("both", "map "+p.Map, "%s: the store says %s", p, w)
		}
	}
	for k, w := range wantPorts {
		if !have[k] {
			g.drift("store", "map "+w.Map, "%s is missing", w)
		}
	}
}

// Only keeps the networks named (by name, id or id prefix) and the drift
// about them; foreign bridges go. An unknown name is an error.
func (t *Topology) Only(refs ...string) error {
	if len(refs) == 0 {
		return nil
	}
	var keep []Network
	for _, ref := range refs {
		found := false
		for _, n := range t.Networks {
			if n.Name == ref || ref != "" && strings.HasPrefix(n.ID, ref) {
				if !slices.ContainsFunc(keep, func(k Network) bool { return k.ID == n.ID }) {
					keep = append(keep, n)
				}
				found = true
				break
			}
		}
		if !found {
			//lint:ignore ST1005 Docker's words, which scripts grep
			return fmt.Errorf("No such network: %s; list networks with `ctnet network ls`", ref)
		}
	}
	var words []string
	for _, n := range keep {
		words = append(words, fmt.Sprintf("%q", n.Name), n.Device)
		for _, e := range n.Endpoints {
			words = append(words, e.HostIf)
		}
	}
	var drift []Drift
	for _, d := range t.Drift {
		for _, w := range words {
			if w != "" && strings.Contains(d.Object+" "+d.Problem, w) {
				drift = append(drift, d)
				break
			}
		}
	}
	t.Networks, t.Foreign, t.Drift = keep, nil, drift
	return nil
}
