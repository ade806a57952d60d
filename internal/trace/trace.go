// Package trace says what one packet would meet on its way between two
// points of a host's container network, step by step, and where it ends:
// the route in its namespace, the bridge port it enters (anti-spoofing, the
// isolated flag of icc=false), the DNAT maps, the forward chain's rules
// (isolation between networks, --internal, only published ports from the
// outside), masquerade, the guards of 127.0.0.1. It reads the kernel's own
// answers (route lookups in each namespace, the firewall tables' elements,
// port flags and sysctls, through package topology) and walks the fixed rules
// of ctnet's tables (package firewall's layout) with them. It sends nothing.
package trace

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/topology"
)

// Point is one end of a trace.
type Point struct {
	Kind  string     // "container", "namespace", "host", "outside" or "address"
	Name  string     // for people
	NetNS string     // of a container or namespace
	Addr  netip.Addr // given, or the one chosen
}

func (p Point) String() string {
	if p.Kind == "address" || p.Kind == "outside" {
		return p.Name + " (" + p.Addr.String() + ")"
	}
	return p.Name
}

// Packet is what is sent: ICMP echo (Port 0) or the first packet of a TCP,
// UDP or SCTP flow to Port.
type Packet struct {
	Proto string
	Port  uint16
}

func (p Packet) String() string {
	if p.Port == 0 {
		return "ICMP echo"
	}
	return fmt.Sprintf("%s to port %d", p.Proto, p.Port)
}

// ParsePacket reads PORT/PROTO (8080/tcp, 53/udp; tcp when left out).
func ParsePacket(s string) (Packet, error) {
	if s == "" || s == "icmp" {
		return Packet{Proto: "icmp"}, nil
	}
	port, proto, ok := strings.Cut(s, "/")
	if !ok {
		proto = "tcp"
	}
	proto = strings.ToLower(proto)
	n, err := strconv.ParseUint(port, 10, 16)
	if err != nil || n == 0 || (proto != "tcp" && proto != "udp" && proto != "sctp") {
		return Packet{}, fmt.Errorf("%q: want PORT/PROTO with a port from 1 to 65535 and tcp, udp or sctp (or icmp)", s)
	}
	return Packet{Proto: proto, Port: uint16(n)}, nil
}

// Step is one thing the packet meets.
type Step struct {
	Where string `json:"where"`
	What  string `json:"what"`
}

// Result is where the packet ends.
type Result struct {
	From, To  string
	Packet    string
	Steps     []Step
	Delivered bool
	// Reaches is what the packet reaches when Delivered: a container's or
	// namespace's name, "the host" or "the outside".
	Reaches string
	Verdict string // one line
}

// Tracer answers for one host.
type Tracer struct {
	t     *topology.Topology
	host  *netx.Handle
	self  *namespace.NS
	nets  map[string]*topology.Network // by bridge
	eps   map[string]epRef             // by host interface
	addrs map[netip.Addr]epRef         // container addresses
	brnf  bool                         // br_netfilter hands bridged frames to the IP hooks
}

type epRef struct {
	n  *topology.Network
	ep *topology.Endpoint
}

// New reads the host namespace (the calling thread's) as t describes it.
func New(t *topology.Topology) (*Tracer, error) {
	self, err := namespace.Current()
	if err != nil {
		return nil, err
	}
	h, err := netx.Open(self.Handle)
	if err != nil {
		self.Close()
		return nil, err
	}
	tr := &Tracer{t: t, host: h, self: self, nets: map[string]*topology.Network{}, eps: map[string]epRef{}, addrs: map[netip.Addr]epRef{}}
	for i := range t.Networks {
		n := &t.Networks[i]
		tr.nets[n.Device] = n
		for j := range n.Endpoints {
			e := &n.Endpoints[j]
			tr.eps[e.HostIf] = epRef{n, e}
			for _, a := range e.Addrs {
				if p, err := netip.ParsePrefix(a); err == nil {
					tr.addrs[p.Addr()] = epRef{n, e}
				}
			}
		}
	}
	namespace.In(h.NS(), func() error {
		b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
		tr.brnf = err == nil && strings.TrimSpace(string(b)) == "1"
		return nil
	})
	return tr, nil
}

// Close releases the host handle.
func (tr *Tracer) Close() {
	tr.host.Close()
	tr.self.Close()
}

// Resolve reads a FROM or TO: "outside", "host", a namespace path (with a
// '/'), an address, or a container (container finds a ctnet container by
// name or id: its name and namespace).
func (tr *Tracer) Resolve(arg string, container func(ref string) (name, netns string, err error)) (Point, error) {
	switch {
	case arg == "outside":
		gw, _ := netip.ParseAddr(tr.t.Host.Gateway)
		if !gw.IsValid() {
			return Point{}, errors.New("outside: the host has no default route, so nothing is outside")
		}
		return Point{Kind: "outside", Name: "the outside", Addr: gw}, nil
	case arg == "host":
		a := tr.hostAddr()
		if !a.IsValid() {
			return Point{}, errors.New("host: the uplink has no IPv4 address; give one of the host's addresses")
		}
		return Point{Kind: "host", Name: "the host", Addr: a}, nil
	case strings.Contains(arg, "/"):
		key := namespace.KeyOf(arg)
		for _, r := range tr.eps {
			if r.ep.NetNS != "" && (r.ep.NetNS == arg || key != "" && namespace.KeyOf(r.ep.NetNS) == key) {
				kind := "namespace"
				if r.ep.Kind == "container" {
					kind = "container"
				}
				return Point{Kind: kind, Name: r.ep.Owner, NetNS: r.ep.NetNS}, nil
			}
		}
		if key == "" {
			return Point{}, fmt.Errorf("%s: no such namespace (give /proc/PID/ns/net, /run/netns/NAME, a container, an address or outside)", arg)
		}
		return Point{}, fmt.Errorf("namespace %s is attached to no ctnet network", arg)
	}
	if a, err := netip.ParseAddr(arg); err == nil {
		a = a.Unmap()
		if r, ok := tr.addrs[a]; ok {
			return Point{Kind: r.ep.Kind, Name: r.ep.Owner, NetNS: r.ep.NetNS, Addr: a}, nil
		}
		if tr.local(a) {
			return Point{Kind: "host", Name: "the host", Addr: a}, nil
		}
		return Point{Kind: "address", Name: "the outside", Addr: a}, nil
	}
	if container == nil {
		return Point{}, fmt.Errorf("%q: not an address, a namespace path or outside", arg)
	}
	name, netns, err := container(arg)
	if err != nil {
		return Point{}, err
	}
	if netns == "" {
		return Point{}, fmt.Errorf("container %q uses the host's network (--network host): trace from the host instead", name)
	}
	for _, r := range tr.eps {
		if r.ep.Kind == "container" && r.ep.NetNS == netns {
			return Point{Kind: "container", Name: r.ep.Owner, NetNS: netns}, nil
		}
	}
	return Point{}, fmt.Errorf("container %q is attached to no network (--network none, or not running)", name)
}

func (tr *Tracer) hostAddr() netip.Addr {
	for _, a := range tr.t.Host.Addrs {
		if p, err := netip.ParsePrefix(a); err == nil && p.Addr().Is4() {
			return p.Addr()
		}
	}
	return netip.Addr{}
}

// local reports whether a is an address of the host namespace.
func (tr *Tracer) local(a netip.Addr) bool {
	rs, err := tr.host.RouteGet(a.AsSlice())
	return err == nil && len(rs) > 0 && rs[0].Type == unix.RTN_LOCAL
}

// walk is one trace in progress.
type walk struct {
	tr  *Tracer
	r   *Result
	pkt Packet
	src netip.Addr
	dst netip.Addr
	// the connection tracking facts of the first packet
	dnat bool
	// where the packet is in the host: the interface it came in on ("" =
	// made by the host)
	iif string
}

func (w *walk) step(where, format string, args ...any) {
	w.r.Steps = append(w.r.Steps, Step{Where: where, What: fmt.Sprintf(format, args...)})
}

func (w *walk) end(delivered bool, reaches, format string, args ...any) *Result {
	w.r.Delivered, w.r.Reaches, w.r.Verdict = delivered, reaches, fmt.Sprintf(format, args...)
	return w.r
}

func (w *walk) dstPort() string {
	if w.pkt.Port == 0 {
		return w.dst.String()
	}
	return netip.AddrPortFrom(w.dst, w.pkt.Port).String()
}

// Trace follows one packet of p from from to to.
func (tr *Tracer) Trace(from, to Point, p Packet) (*Result, error) {
	if !to.Addr.IsValid() {
		a, err := tr.addrOf(to, from)
		if err != nil {
			return nil, err
		}
		to.Addr = a
	}
	w := &walk{tr: tr, pkt: p, dst: to.Addr, r: &Result{From: from.String(), To: to.String(), Packet: p.String()}}
	switch from.Kind {
	case "container", "namespace", "netns", "cni", "docker":
		return w.fromNamespace(from)
	case "host":
		w.src = from.Addr
		return w.fromHost()
	default:
		w.src = from.Addr
		return w.fromOutside(from)
	}
}

// addrOf is the address to send to at a container or namespace: the one on
// a network it shares with from, else its first.
func (tr *Tracer) addrOf(to, from Point) (netip.Addr, error) {
	var first netip.Addr
	for _, n := range tr.t.Networks {
		for _, e := range n.Endpoints {
			if e.NetNS != to.NetNS {
				continue
			}
			for _, a := range e.Addrs {
				p, err := netip.ParsePrefix(a)
				if err != nil || !p.Addr().Is4() {
					continue
				}
				if !first.IsValid() {
					first = p.Addr()
				}
				if from.NetNS != "" && slices.ContainsFunc(n.Endpoints, func(o topology.Endpoint) bool { return o.NetNS == from.NetNS }) {
					return p.Addr(), nil
				}
			}
		}
	}
	if !first.IsValid() {
		return first, fmt.Errorf("%s has no IPv4 address on a ctnet network", to.Name)
	}
	return first, nil
}

func (w *walk) fromNamespace(from Point) (*Result, error) {
	ns, err := namespace.Open(from.NetNS)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	h, err := netx.Open(ns.Handle)
	if err != nil {
		return nil, err
	}
	defer h.Close()
	where := "in " + from.Name
	rs, err := h.RouteGet(w.dst.AsSlice())
	if err != nil || len(rs) == 0 {
		w.step(where, "route to %s: none (%v)", w.dst, routeErr(err))
		why := ""
		for _, r := range w.tr.eps {
			if r.ep.NetNS == from.NetNS && r.n.Internal {
				why = fmt.Sprintf(": network %q is --internal, so %s has no default route", r.n.Name, from.Name)
			}
		}
		return w.end(false, "", "not sent: %s has no route to %s%s", from.Name, w.dst, why), nil
	}
	rt := rs[0]
	if rt.Type == unix.RTN_LOCAL {
		w.step(where, "route to %s: local, the namespace's own address", w.dst)
		return w.end(true, from.Name, "reaches %s itself (its own address)", from.Name), nil
	}
	l, err := h.LinkByIndex(rt.LinkIndex)
	if err != nil {
		return nil, fmt.Errorf("%s: link %d: %w", from.Name, rt.LinkIndex, err)
	}
	w.src, _ = netip.AddrFromSlice(rt.Src)
	w.src = w.src.Unmap()
	next := w.dst
	how := "on-link"
	if rt.Gw != nil {
		next, _ = netip.AddrFromSlice(rt.Gw)
		next = next.Unmap()
		how = "via " + next.String()
	}
	w.step(where, "route to %s: %s dev %s src %s", w.dst, how, l.Attrs().Name, w.src)
	var ref epRef
	for _, r := range w.tr.eps {
		if r.ep.NetNS == from.NetNS && r.ep.IfName == l.Attrs().Name {
			ref = r
		}
	}
	if ref.ep == nil {
		return w.end(false, "", "leaves %s by %s, which is no ctnet endpoint", from.Name, l.Attrs().Name), nil
	}
	port, br := ref.ep.HostIf, ref.n.Device
	w.step("veth pair", "%s -> %s, a port of bridge %s", ref.ep.InnerName(), ref.ep.HostName(), br)
	if ok := w.fromPort(port, ref); !ok {
		return w.r, nil
	}
	// Who answers ARP for the next hop: the bridge itself (the host), or a
	// sibling port.
	if w.tr.bridgeHas(ref.n, next) {
		w.step("bridge "+br, "%s is the bridge's own address: the frame goes up to the host", next)
		w.iif = br
		return w.inHost(), nil
	}
	peer, ok := w.tr.addrs[next]
	if !ok || peer.n.Device != br {
		return w.end(false, "", "dropped: nothing on bridge %s has %s (ARP gets no answer)", br, next), nil
	}
	if peer.ep == ref.ep {
		return w.end(true, from.Name, "reaches %s itself", from.Name), nil
	}
	w.step("bridge "+br, "%s is %s on port %s: bridged, no IP hook on the way", next, peer.ep.Owner, peer.ep.HostIf)
	if ref.ep.Isolated && peer.ep.Isolated {
		w.step("bridge "+br, "ports %s and %s are both isolated (icc=false): the bridge forwards nothing between them", port, peer.ep.HostIf)
		return w.end(false, "", "dropped by bridge %s: icc=false isolates %s from %s", br, from.Name, peer.ep.Owner), nil
	}
	if w.tr.brnf {
		w.step("inet ctnet forward", "br_netfilter passes bridged frames to the IP hooks: %s . %s is in bridge_pairs -> intra_bridge", br, br)
		if w.tr.t.Tables.NoICC[br] {
			return w.end(false, "", "dropped by inet ctnet intra_bridge: %s is in noicc_bridges (icc=false)", br), nil
		}
		w.step("inet ctnet intra_bridge", "same bridge: accept")
	}
	return w.end(true, peer.ep.Owner, "reaches %s at %s (bridged on %s)", peer.ep.Owner, w.dstPort(), br), nil
}

func routeErr(err error) string {
	if err == nil {
		return "no route"
	}
	if errors.Is(err, unix.ENETUNREACH) {
		return "network is unreachable"
	}
	return err.Error()
}

// fromPort is table bridge ctnet's prerouting for a frame from port.
func (w *walk) fromPort(port string, ref epRef) bool {
	t := w.tr.t.Tables
	where := "bridge ctnet prerouting"
	if !t.Endpoints[port] {
		w.step(where, "%s is not in set ports: its frames go unchecked (drift: reconcile adds it)", port)
		return true
	}
	if isLoopback(w.src) || isLoopback(w.dst) {
		w.end(false, "", "dropped by bridge ctnet from_port: no loopback addresses from a container")
		return false
	}
	if !t.Guarded[port] {
		w.step(where, "%s -> from_port: no VLAN tag, no RA or redirect; not guarded (anti_spoofing=false): any source", port)
		return true
	}
	if !slices.Contains(t.Addrs[port], w.src) {
		w.end(false, "", "dropped by bridge ctnet antispoof: source %s is not an address of port %s", w.src, port)
		return false
	}
	w.step(where, "%s -> from_port -> antispoof: source %s . MAC %s are port %s's own (port_addrs, port_macs): accept",
		port, w.src, ref.ep.MAC, port)
	return true
}

func isLoopback(a netip.Addr) bool { return a.IsValid() && a.IsLoopback() }

func (tr *Tracer) bridgeHas(n *topology.Network, a netip.Addr) bool {
	if n.Bridge == nil {
		return false
	}
	for _, s := range n.Bridge.Addrs {
		if p, err := netip.ParsePrefix(s); err == nil && p.Addr() == a {
			return true
		}
	}
	return false
}

// published looks dst . proto . port up in the DNAT maps.
func (w *walk) published() (topology.PortMap, bool) {
	if w.pkt.Port == 0 {
		return topology.PortMap{}, false
	}
	for _, any := range []bool{false, true} {
		for _, p := range w.tr.t.Tables.Ports {
			if p.Proto != w.pkt.Proto || p.HostPort != w.pkt.Port || p.ContainerIP.Is4() != w.dst.Is4() {
				continue
			}
			if !any && p.HostIP == w.dst || any && !p.HostIP.IsValid() {
				return p, true
			}
		}
	}
	return topology.PortMap{}, false
}

// dnatStep is the published chain: a map element rewrites the destination.
func (w *walk) dnatStep(chain string) {
	if w.pkt.Port == 0 {
		w.step(chain, "%s is this host's: jump published; an ICMP echo has no port, so no map matches", w.dst)
		return
	}
	p, ok := w.published()
	if !ok {
		w.step(chain, "%s is this host's: jump published; no element of the DNAT maps has %s . %s . %d", w.dst, w.dst, w.pkt.Proto, w.pkt.Port)
		return
	}
	key := fmt.Sprintf("%s . %d", w.pkt.Proto, p.HostPort)
	if p.HostIP.IsValid() {
		key = p.HostIP.String() + " . " + key
	}
	w.step(chain, "%s is this host's: jump published; map %s has { %s : %s . %d }: DNAT to %s",
		w.dst, p.Map, key, p.ContainerIP, p.ContainerPort, netip.AddrPortFrom(p.ContainerIP, p.ContainerPort))
	w.dst, w.pkt.Port, w.dnat = p.ContainerIP, p.ContainerPort, true
}

// otherAddress names the addresses a port is published on when dst is not
// one of them: the 127.0.0.1-only case.
func (w *walk) otherAddresses() string {
	var on []string
	for _, p := range w.tr.t.Tables.Ports {
		if p.Proto == w.pkt.Proto && p.HostPort == w.pkt.Port && p.HostIP.IsValid() && p.HostIP != w.dst {
			on = append(on, p.HostIP.String())
		}
	}
	if len(on) == 0 {
		return ""
	}
	return fmt.Sprintf("; %d/%s is published only on %s", w.pkt.Port, w.pkt.Proto, strings.Join(on, ", "))
}

// inHost is a packet that came up from bridge w.iif into the host's stack.
func (w *walk) inHost() *Result {
	t := w.tr.t.Tables
	if w.tr.local(w.dst) {
		w.dnatStep("inet ctnet prerouting")
		if !w.dnat {
			if w.dst.Is4() && w.dst.IsLoopback() && t.Bridges[w.iif] {
				return w.end(false, "", "dropped by inet ctnet input: no host loopback from containers")
			}
			w.step("inet ctnet input", "not translated: for the host itself")
			return w.end(true, "the host", "reaches the host itself at %s (whatever listens there answers)%s", w.dstPort(), w.otherAddresses())
		}
	} else {
		w.step("inet ctnet prerouting", "%s is not this host's: no DNAT", w.dst)
	}
	return w.forward()
}

// forward routes the packet through the host and walks the forward chain.
func (w *walk) forward() *Result {
	t := w.tr.t.Tables
	opts := &netlink.RouteGetOptions{Iif: w.iif, SrcAddr: w.src.AsSlice()}
	rs, err := w.tr.host.RouteGetWithOptions(w.dst.AsSlice(), opts)
	if err != nil || len(rs) == 0 {
		rs, err = w.tr.host.RouteGet(w.dst.AsSlice())
	}
	if err != nil || len(rs) == 0 {
		return w.end(false, "", "dropped: the host has no route to %s (%s)", w.dst, routeErr(err))
	}
	l, err := w.tr.host.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return w.end(false, "", "dropped: the host's route to %s has no device", w.dst)
	}
	oif := l.Attrs().Name
	via := ""
	if rs[0].Gw != nil {
		via = " via " + rs[0].Gw.String()
	}
	w.step("host route", "%s%s dev %s", w.dst, via, oif)
	if oif == w.iif && !t.Bridges[oif] {
		return w.end(false, "", "sent back out of %s", oif)
	}
	if !w.tr.t.Host.Forwarding {
		return w.end(false, "", "dropped: ip_forward is 0 on the host")
	}
	f := "inet ctnet forward"
	ib, ob := t.Bridges[w.iif], t.Bridges[oif]
	if ib && isLoopback(w.src) {
		return w.end(false, "", "dropped by %s: no loopback source from containers", f)
	}
	if ib && ob && w.iif == oif {
		w.step(f, "within one bridge: %s . %s in bridge_pairs -> intra_bridge", oif, oif)
		switch {
		case w.dnat:
			w.step("inet ctnet intra_bridge", "ct status dnat: published ports stay reachable from siblings: accept")
		case t.NoICC[oif]:
			return w.end(false, "", "dropped by inet ctnet intra_bridge: %s is in noicc_bridges (icc=false)", oif)
		default:
			w.step("inet ctnet intra_bridge", "same bridge: accept")
		}
		return w.post(oif)
	}
	if t.Internal[w.iif] {
		return w.end(false, "", "dropped by %s: %s is in internal_bridges (--internal: nothing leaves it)", f, w.iif)
	}
	if t.Internal[oif] {
		return w.end(false, "", "dropped by %s: %s is in internal_bridges (--internal: nothing enters it)", f, oif)
	}
	if ib && ob {
		w.step(f, "between networks: %s and %s are both in bridges -> between_bridges", w.iif, oif)
		if w.dnat && slices.ContainsFunc(t.Subnets[w.iif], func(p netip.Prefix) bool { return p.Contains(w.src) }) {
			w.step("inet ctnet between_bridges", "ct status dnat, source %s in subnets of %s: a published port of another network: accept", w.src, w.iif)
			return w.post(oif)
		}
		return w.end(false, "", "dropped by inet ctnet between_bridges: network isolation (%s may not reach %s)", w.iif, oif)
	}
	if w.dnat {
		w.step(f, "ct status dnat: a published port: accept")
		return w.post(oif)
	}
	if ob && !t.Routed[oif] {
		return w.end(false, "", "dropped by %s: only published ports and replies enter %s from outside (gateway_mode_ipv4=nat-unprotected opens it)", f, oif)
	}
	w.step(f, "policy accept")
	return w.post(oif)
}

// post is postrouting and the last hop.
func (w *walk) post(oif string) *Result {
	t := w.tr.t.Tables
	p := "inet ctnet postrouting"
	seen := w.src
	masq := func(why string) {
		if rs, err := w.tr.host.RouteGet(w.dst.AsSlice()); err == nil && len(rs) > 0 && rs[0].Src != nil {
			seen, _ = netip.AddrFromSlice(rs[0].Src)
			seen = seen.Unmap()
		}
		w.step(p, "%s: masquerade %s -> %s", why, w.src, seen)
	}
	switch {
	case w.dnat && t.Bridges[oif] && slices.ContainsFunc(t.Subnets[oif], func(pr netip.Prefix) bool { return pr.Contains(w.src) }):
		masq("hairpin (ct status dnat, source in subnets of " + oif + ")")
	case t.Bridges[oif] && w.src.Is4() && w.src.IsLoopback():
		if n := w.tr.nets[oif]; n != nil && n.Bridge != nil && !n.Bridge.RouteLocalnet {
			return w.end(false, "", "dropped by the kernel: a loopback source may leave %s only with route_localnet=1, which is 0", oif)
		}
		masq("from host loopback (route_localnet=1 on " + oif + ")")
	case t.Masq[w.iif] && !t.Bridges[oif]:
		masq("to the outside (" + w.iif + " is in masq_bridges)")
	}
	if n := w.tr.nets[oif]; n != nil {
		peer, ok := w.tr.addrs[w.dst]
		if !ok || peer.n.Device != oif {
			return w.end(false, "", "dropped: nothing on bridge %s has %s", oif, w.dst)
		}
		return w.end(true, peer.ep.Owner, "reaches %s at %s (source %s)", peer.ep.Owner, w.dstPort(), seen)
	}
	return w.end(true, "the outside", "leaves the host by %s to %s (source %s)", oif, w.dstPort(), seen)
}

func (w *walk) fromHost() (*Result, error) {
	rs, err := w.tr.host.RouteGet(w.dst.AsSlice())
	if err != nil || len(rs) == 0 {
		return w.end(false, "", "not sent: the host has no route to %s (%s)", w.dst, routeErr(err)), nil
	}
	if !w.src.IsValid() || !w.tr.local(w.src) {
		w.src, _ = netip.AddrFromSlice(rs[0].Src)
		w.src = w.src.Unmap()
	}
	if w.dst.Is4() && w.dst.IsLoopback() {
		w.src = w.dst
	}
	w.step("host route", "%s: %s", w.dst, routeText(w.tr.host, rs[0]))
	if rs[0].Type == unix.RTN_LOCAL {
		if w.dst.Is6() && w.dst.IsLoopback() {
			w.step("inet ctnet output", "[::1] is not translated (ports on [::1] are socket redirections, package loopback)")
		} else {
			w.dnatStep("inet ctnet output")
		}
		if !w.dnat {
			return w.end(true, "the host", "reaches the host itself at %s (whatever listens there answers)", w.dstPort()), nil
		}
		rs, err = w.tr.host.RouteGet(w.dst.AsSlice())
		if err != nil || len(rs) == 0 {
			return w.end(false, "", "dropped: the host has no route to %s", w.dst), nil
		}
		w.step("host route", "%s: %s", w.dst, routeText(w.tr.host, rs[0]))
	}
	l, err := w.tr.host.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return nil, err
	}
	return w.post(l.Attrs().Name), nil
}

func routeText(h *netx.Handle, r netlink.Route) string {
	if r.Type == unix.RTN_LOCAL {
		return "local"
	}
	dev := strconv.Itoa(r.LinkIndex)
	if l, err := h.LinkByIndex(r.LinkIndex); err == nil {
		dev = l.Attrs().Name
	}
	s := "dev " + dev
	if r.Gw != nil {
		s = "via " + r.Gw.String() + " " + s
	}
	if r.Src != nil {
		s += " src " + r.Src.String()
	}
	return s
}

func (w *walk) fromOutside(from Point) (*Result, error) {
	// The packet arrives where the host routes its source.
	rs, err := w.tr.host.RouteGet(w.src.AsSlice())
	if err != nil || len(rs) == 0 {
		return nil, fmt.Errorf("%s: the host has no route back to %s", from.Name, w.src)
	}
	l, err := w.tr.host.LinkByIndex(rs[0].LinkIndex)
	if err != nil {
		return nil, err
	}
	w.iif = l.Attrs().Name
	w.step("arrives", "on %s from %s", w.iif, w.src)
	if _, isBridge := w.tr.nets[w.iif]; isBridge {
		return nil, fmt.Errorf("%s is on bridge %s: trace from its container or namespace", w.src, w.iif)
	}
	if w.dst.Is4() && w.dst.IsLoopback() {
		w.step("inet ctnet prerouting", "destination %s from the wire: return, never translated", w.dst)
		return w.end(false, "", "dropped: the kernel drops a loopback destination from the wire (martian; Docker's DNAT of 127.0.0.1 ports let neighbours in this way)"), nil
	}
	if w.dst.Is6() && w.dst.IsLoopback() {
		return w.end(false, "", "dropped: ::1 from the wire is never accepted"), nil
	}
	if w.tr.local(w.dst) {
		w.dnatStep("inet ctnet prerouting")
		if !w.dnat {
			w.step("inet ctnet input", "not translated: for the host itself")
			return w.end(true, "the host", "reaches the host itself at %s (whatever listens there answers)%s", w.dstPort(), w.otherAddresses()), nil
		}
	} else {
		w.step("inet ctnet prerouting", "%s is not this host's: no DNAT", w.dst)
	}
	return w.forward(), nil
}

// String is the trace for a terminal.
func (r *Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s from %s to %s\n", r.Packet, r.From, r.To)
	width := 0
	for _, s := range r.Steps {
		width = max(width, len(s.Where))
	}
	for i, s := range r.Steps {
		fmt.Fprintf(&b, "%2d. %-*s  %s\n", i+1, width, s.Where, s.What)
	}
	if r.Delivered {
		fmt.Fprintf(&b, "=> DELIVERED: %s\n", r.Verdict)
	} else if v, ok := strings.CutPrefix(r.Verdict, "dropped "); ok {
		fmt.Fprintf(&b, "=> DROPPED %s\n", v)
	} else {
		fmt.Fprintf(&b, "=> DROPPED: %s\n", strings.TrimPrefix(r.Verdict, "dropped: "))
	}
	return b.String()
}
