package bridge

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/netx"
)

// The driver says what it would do as ip, bridge, sysctl and nft command
// lines, from the same facts its methods act on: the firewall's view of a
// network (rules), of an endpoint (endpointRules) and of its ports
// (publishedPorts), the veth it would make (vethSpec), the inner end's
// configuration (ifaceConfig), the port flags (portFlagsOf) and the sysctl
// paths package firewall names. e2e/explain_test.go runs the commands on one
// host and compares the kernel with what ctnet itself makes on another.

var _ driver.Explainer = (*Driver)(nil)

// ExplainCreateNetwork is CreateNetwork as commands.
func (d *Driver) ExplainCreateNetwork(n driver.Network) ([]driver.Command, error) {
	var out []driver.Command
	br := n.Device
	existing, err := netx.LinkOrNil(d.host, br)
	if err != nil {
		return nil, err
	}
	if existing == nil {
		out = append(out,
			driver.Cmd(fmt.Sprintf("the bridge of network %q, with a MAC derived from its name (its bridge id stays when ports come and go)", n.Name),
				"ip", "link", "add", br, "address", netx.BridgeMAC(br).String(), "type", "bridge"),
			driver.Cmd("set explicitly, so the kernel keeps it when ports come and go", "ip", "link", "set", br, "mtu", strconv.Itoa(n.MTU)),
			driver.Cmd("its MAC is ctnet's own: no duplicate address detection", sysctl("/proc/sys/net/ipv6/conf/"+br+"/accept_dad", "0")...),
		)
	} else {
		out = append(out, driver.Note("bridge %s exists already: ctnet would check its MTU and addresses", br))
	}
	out = append(out, driver.Cmd("", "ip", "link", "set", br, "up"))
	for _, gw := range gateways(n) {
		args := append([]string{"ip", "addr", "add", gw.String()}, addrFlags(gw)...)
		args = append(args, "dev", br)
		why := "the gateway"
		if p := publishedIPv6(n); p.IsValid() && gw.IP.To4() == nil {
			why = fmt.Sprintf("an IPv4-only network: IPv6 clients of published ports reach its containers in the private %s, from this address", p)
		}
		out = append(out, driver.Cmd(why, args...))
	}
	out = append(out, driver.Cmd("how ctnet knows its own bridges", "ip", "link", "set", br, "alias", AliasPrefix+n.Name))
	out = append(out, driver.Cmd("routing on", sysctl("/proc/sys/net/ipv4/ip_forward", "1")...))
	if n.IPv6 {
		out = append(out, driver.Cmd("", sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")...))
	}
	out = append(out,
		driver.Cmd("a container's router advertisement gives the host no route", sysctl(firewall.AcceptRASysctl(br), "0")...),
		driver.Cmd("ports published on 127.0.0.1 are DNATed to the bridge (the tables drop any other loopback traffic of containers)",
			sysctl(firewall.RouteLocalnetSysctl(br), "1")...))
	out = append(out, nftCmds("add", "the network's facts: the rules of tables inet ctnet and bridge ctnet never change, only their sets",
		networkElements(rules(n)))...)
	return out, nil
}

// ExplainDeleteNetwork is DeleteNetwork as commands.
func (d *Driver) ExplainDeleteNetwork(n driver.Network) ([]driver.Command, error) {
	out := nftCmds("delete", "", networkElements(rules(n)))
	return append(out, driver.Cmd("", "ip", "link", "del", n.Device)), nil
}

// ExplainJoin is Join as commands.
func (d *Driver) ExplainJoin(n driver.Network, ep driver.Endpoint, sb driver.Sandbox) ([]driver.Command, error) {
	fn := rules(n)
	els, err := endpointElements(fn, endpointRules(n, ep))
	if err != nil {
		return nil, err
	}
	out := nftCmds("add", "bind the port to the endpoint's MAC and addresses before it exists: no frame leaves it unchecked", els)
	s := vethSpec(n, ep, 0, 0)
	path := sb.Path()
	in := func(args ...string) []string { return append([]string{"nsenter", "--net=" + path}, args...) }
	veth := []string{"ip", "link", "add", s.HostName}
	if s.MTU > 0 {
		veth = append(veth, "mtu", strconv.Itoa(s.MTU))
	}
	veth = append(veth, "master", n.Device, "up", "type", "veth", "peer", "name", s.PeerName)
	if s.MTU > 0 {
		veth = append(veth, "mtu", strconv.Itoa(s.MTU))
	}
	if s.PeerMAC != nil {
		veth = append(veth, "address", s.PeerMAC.String())
	}
	veth = append(veth, "netns", path)
	out = append(out, driver.Cmd(fmt.Sprintf("the pair in one request: %s born inside the namespace under its final name, the host end up on %s",
		s.PeerName, n.Device), veth...))
	switch {
	case s.DisableIPv6 && s.PeerIPv6:
		out = append(out,
			driver.Cmd("an IPv4-only network: no IPv6 on the bridge port", sysctl("/proc/sys/net/ipv6/conf/"+s.HostName+"/disable_ipv6", "1")...),
			driver.Cmd("the container takes IPv6 clients of its published ports, no router advertisements", in(sysctl("/proc/sys/net/ipv6/conf/"+s.PeerName+"/accept_ra", "0")...)...))
	case s.DisableIPv6:
		out = append(out,
			driver.Cmd("an IPv4-only network: no IPv6 on either end", sysctl("/proc/sys/net/ipv6/conf/"+s.HostName+"/disable_ipv6", "1")...),
			driver.Cmd("", in(sysctl("/proc/sys/net/ipv6/conf/"+s.PeerName+"/disable_ipv6", "1")...)...))
	case s.NoRA:
		out = append(out,
			driver.Cmd("neither end takes router advertisements", sysctl("/proc/sys/net/ipv6/conf/"+s.HostName+"/accept_ra", "0")...),
			driver.Cmd("", in(sysctl("/proc/sys/net/ipv6/conf/"+s.PeerName+"/accept_ra", "0")...)...))
	}
	isolated, hairpin := portFlagsOf(n)
	if isolated {
		out = append(out, driver.Cmd("icc=false: isolated ports reach the bridge, not each other", "bridge", "link", "set", "dev", s.HostName, "isolated", "on"))
	}
	if hairpin {
		out = append(out, driver.Cmd("br_netfilter is loaded: a packet DNATed back to its own port must be let out of it", "bridge", "link", "set", "dev", s.HostName, "hairpin", "on"))
	}
	cfg := ifaceConfig(n, ep)
	out = append(out, driver.Cmd("inside the namespace", in("ip", "link", "set", "lo", "up")...))
	for _, a := range cfg.Addrs {
		args := in(append(append([]string{"ip", "addr", "add", a.String()}, addrFlags(a)...), "dev", cfg.Name)...)
		out = append(out, driver.Cmd("", args...))
	}
	out = append(out, driver.Cmd("", in("ip", "link", "set", cfg.Name, "up")...))
	for _, gw := range []net.IP{cfg.Gateway4, cfg.Gateway6} {
		if gw != nil {
			out = append(out, driver.Cmd("", in("ip", "route", "replace", "default", "via", gw.String(), "dev", cfg.Name)...))
		}
	}
	if n.Internal {
		out = append(out, driver.Note("--internal: no default route"))
	}
	return out, nil
}

// ExplainLeave is Leave as commands.
func (d *Driver) ExplainLeave(n driver.Network, ep driver.Endpoint, nsGoing bool) ([]driver.Command, error) {
	var out []driver.Command
	if nsGoing {
		out = append(out, driver.Note("the namespace is about to go: the kernel reclaims %s with it", ep.HostIf))
	} else {
		out = append(out, driver.Cmd("deleting one end deletes both", "ip", "link", "del", ep.HostIf))
	}
	els, err := endpointElements(rules(n), endpointRules(n, ep))
	if err != nil {
		return nil, err
	}
	return append(out, nftCmds("delete", "", els)...), nil
}

// ExplainPublish is Publish as commands.
func (d *Driver) ExplainPublish(n driver.Network, ep driver.Endpoint) ([]driver.Command, error) {
	p := d.ports(n, ep)
	var els []element
	for _, fp := range p.fw {
		e, err := portElement(fp)
		if err != nil {
			return nil, err
		}
		els = append(els, e)
	}
	var out []driver.Command
	if endpointIPv6(n, ep).IsValid() {
		out = append(out, driver.Cmd("IPv6 clients are DNATed to the container's private IPv6 address and forwarded", sysctl("/proc/sys/net/ipv6/conf/all/forwarding", "1")...))
	}
	out = append(out, nftCmds("add", "published ports are elements of the DNAT maps: no proxy, no rule per port", els)...)
	for _, lp := range p.lo {
		out = append(out, driver.Note("[::1]:%d/%s -> %s: served by rewriting sockets (cgroup programs connect6, sendmsg6, recvmsg6, getpeername6); no command line does that",
			lp.HostPort, lp.Proto, netip.AddrPortFrom(lp.ContainerIP, lp.ContainerPort)))
	}
	if len(p.loAlso) > 0 {
		out = append(out, driver.Note("the ports on every address answer on [::1] too, by the same socket rewriting"))
	}
	return out, nil
}

// ExplainUnpublish is Unpublish as commands.
func (d *Driver) ExplainUnpublish(n driver.Network, ep driver.Endpoint) ([]driver.Command, error) {
	var els []element
	for _, fp := range d.ports(n, ep).fw {
		e, err := portElement(fp)
		if err != nil {
			return nil, err
		}
		els = append(els, e)
	}
	return nftCmds("delete", "", els), nil
}

// addrFlags are what netx's address adds set besides the address: the
// broadcast address netlink computes for IPv4, no duplicate address
// detection for IPv6.
func addrFlags(a *net.IPNet) []string {
	if a.IP.To4() == nil {
		return []string{"nodad"}
	}
	if ones, _ := a.Mask.Size(); ones < 31 {
		return []string{"brd", "+"}
	}
	return nil
}

// sysctl is the command that writes a /proc/sys path.
func sysctl(path, value string) []string {
	key := strings.TrimPrefix(path, "/proc/sys/")
	if !strings.Contains(key, ".") {
		key = strings.ReplaceAll(key, "/", ".")
	}
	return []string{"sysctl", "-qw", key + "=" + value}
}

// element is one set or map element in nft's syntax.
type element struct {
	family, set, text string
}

// nftCmds is one command per set, in the order the elements come.
func nftCmds(verb, why string, els []element) []driver.Command {
	var out []driver.Command
	var order []string
	by := map[string][]string{}
	for _, e := range els {
		k := e.family + " " + e.set
		if _, ok := by[k]; !ok {
			order = append(order, k)
		}
		by[k] = append(by[k], e.text)
	}
	for i, k := range order {
		fam, set, _ := strings.Cut(k, " ")
		w := ""
		if i == 0 {
			w = why
		}
		out = append(out, driver.Cmd(w, "nft", verb, "element", fam, firewall.TableName, set, "{ "+strings.Join(by[k], ", ")+" }"))
	}
	return out
}

func quoted(ifname string) string { return strconv.Quote(ifname) }

// networkElements are the elements firewall.AddNetwork adds for n.
func networkElements(n firewall.Network) []element {
	br := quoted(n.Bridge)
	els := []element{{"inet", "bridges", br}, {"inet", "bridge_pairs", br + " . " + br}}
	for _, f := range []struct {
		on  bool
		set string
	}{{n.Masquerade, "masq_bridges"}, {n.Internal, "internal_bridges"}, {!n.ICC, "noicc_bridges"}, {n.RoutedIngress, "routed_bridges"},
		{n.PublishedIPv6 != nil, "dnat6_bridges"}} {
		if f.on {
			els = append(els, element{"inet", f.set, br})
		}
	}
	subnets := n.Subnets
	if n.PublishedIPv6 != nil {
		subnets = append(slices.Clip(subnets), n.PublishedIPv6)
	}
	for _, sn := range subnets {
		ones, bits := sn.Mask.Size()
		set := "subnets6"
		if bits == 32 {
			set = "subnets4"
		}
		p := &net.IPNet{IP: sn.IP.Mask(sn.Mask), Mask: sn.Mask}
		if ones == bits {
			els = append(els, element{"inet", set, p.IP.String() + " . " + br})
		} else {
			els = append(els, element{"inet", set, p.String() + " . " + br})
		}
	}
	return els
}

// endpointElements are the elements firewall.AddEndpoint adds for ep on n.
func endpointElements(n firewall.Network, ep firewall.Endpoint) ([]element, error) {
	if len(ep.MAC) != 6 {
		return nil, fmt.Errorf("endpoint %s: MAC %q: want an Ethernet address", ep.Port, ep.MAC)
	}
	port := quoted(ep.Port)
	els := []element{{"bridge", "ports", port}}
	if !n.AllowSpoofing {
		els = append(els, element{"bridge", "guarded_ports", port})
	}
	els = append(els, element{"bridge", "port_macs", port + " . " + ep.MAC.String()})
	seen := map[string]bool{}
	for _, ip := range append([]net.IP{firewall.LinkLocal(ep.MAC)}, ep.IPs...) {
		set := "port_addrs6"
		if ip.To4() != nil {
			set, ip = "port_addrs4", ip.To4()
		}
		if t := port + " . " + ip.String(); !seen[set+t] {
			seen[set+t] = true
			els = append(els, element{"bridge", set, t})
		}
	}
	return els, nil
}

// portElement is the DNAT map element firewall.Publish adds for p.
func portElement(p firewall.Port) (element, error) {
	cip := p.ContainerIP.To4()
	v4 := cip != nil
	if !v4 {
		cip = p.ContainerIP.To16()
	}
	if cip == nil || p.HostPort == 0 || p.ContainerPort == 0 {
		return element{}, fmt.Errorf("port %s cannot be published", p)
	}
	val := fmt.Sprintf("%s . %d", cip, p.ContainerPort)
	key := fmt.Sprintf("%s . %d", p.Proto, p.HostPort)
	fam := "4"
	if !v4 {
		fam = "6"
	}
	if p.HostIP == nil || p.HostIP.IsUnspecified() {
		return element{"inet", "ports" + fam + "_any", key + " : " + val}, nil
	}
	return element{"inet", "ports" + fam + "_addr", p.HostIP.String() + " . " + key + " : " + val}, nil
}
