package firewall

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"net"
	"slices"
	"strings"
)

// Network is what the packet filter needs to know about one bridge network.
type Network struct {
	Bridge     string       // e.g. "ctnet0"
	Subnets    []*net.IPNet // v4 and/or v6: hairpin traffic, and the sources allowed between networks
	Masquerade bool         // NAT traffic forwarded from this bridge to a non-ctnet interface
	Internal   bool         // no forwarding between this bridge and any other interface
	ICC        bool         // containers on this bridge may talk to each other

	// RoutedIngress lets anyone outside open connections to any port of the
	// network's containers, as Docker's gateway mode "nat-unprotected" (or
	// routed without filtering). Off, only published ports and replies to
	// the containers' own connections enter the bridge from outside.
	RoutedIngress bool

	// PublishedIPv6 is, on a network without IPv6, the private /64 (ULA)
	// whose addresses its containers take only as the DNAT target of IPv6
	// clients of published ports: the firewall masquerades that traffic to
	// the gateway's address and drops any other IPv6 from the bridge to
	// elsewhere. It is one of the network's subnets for hairpin traffic.
	PublishedIPv6 *net.IPNet

	// AllowSpoofing turns off the binding of each endpoint's port to its
	// MAC and addresses (see Endpoint): its containers may send with any
	// source, as on Docker's bridges. The guards against router
	// advertisements, redirects, VLAN tags and loopback addresses stay.
	AllowSpoofing bool
}

// Endpoint is one container's port on a bridge. Unless its network allows
// spoofing, frames from the port must have its MAC as Ethernet source, and
// as ARP sender with one of its IPv4 addresses (or 0.0.0.0, an ARP probe);
// IPv4 packets one of its IPv4 addresses as source (or 0.0.0.0 to a DHCP
// server); IPv6 packets one of its IPv6 addresses or the link-local address
// the kernel derives from MAC (fe80::/64 + EUI-64) as source, or :: for
// duplicate address detection of these and for MLD reports; a neighbour
// advertisement must be for one of them. Nothing else, no other ethertype.
type Endpoint struct {
	Port   string           // host end of the veth, a port of Bridge, e.g. "veth1a2b3c4"
	Bridge string           // the network's bridge
	MAC    net.HardwareAddr // the container end's MAC
	IPs    []net.IP         // its addresses, IPv4 and IPv6; another link-local than MAC's EUI-64 goes here too
}

// Port is one published port (docker -p). Ranges are expanded by the caller:
// each port is one map element, and one batch carries any number of them.
type Port struct {
	Proto         string // "tcp", "udp" or "sctp"
	HostIP        net.IP // nil or unspecified: all host addresses of ContainerIP's family
	HostPort      uint16
	ContainerIP   net.IP
	ContainerPort uint16
	Bridge        string // bridge the container is on (not needed by the rules)
}

func (p Port) String() string {
	host := "*"
	if p.HostIP != nil && !p.HostIP.IsUnspecified() {
		host = p.HostIP.String()
	}
	return fmt.Sprintf("%s %s:%d -> %s", p.Proto, host, p.HostPort,
		net.JoinHostPort(p.ContainerIP.String(), fmt.Sprint(p.ContainerPort)))
}

// element is one set or map element, already encoded.
type element struct {
	set    *setSpec
	key    []byte
	keyEnd []byte // last key of a range, for interval sets
	val    []byte // nil for plain sets
}

func (e element) id() string {
	return familyName(e.set.table.Family) + "/" + e.set.name + "/" + string(e.key)
}

func ifname(what, name string) ([]byte, error) {
	if name == "" || len(name) >= 16 || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("%s name %q: must be 1 to 15 bytes", what, name)
	}
	b := make([]byte, 16)
	copy(b, name)
	return b, nil
}

func cat2(a, b []byte) []byte { return append(append([]byte{}, a...), b...) }

func (n Network) elements() ([]element, error) {
	br, err := ifname("bridge", n.Bridge)
	if err != nil {
		return nil, fmt.Errorf("network on %q: %w", n.Bridge, err)
	}
	els := []element{
		{set: setBridges, key: br},
		{set: setPairs, key: cat2(br, br)},
	}
	if n.Masquerade {
		els = append(els, element{set: setMasq, key: br})
	}
	if n.Internal {
		els = append(els, element{set: setInternal, key: br})
	}
	if !n.ICC {
		els = append(els, element{set: setNoICC, key: br})
	}
	if n.RoutedIngress {
		els = append(els, element{set: setRouted, key: br})
	}
	subnets := n.Subnets
	if n.PublishedIPv6 != nil {
		if n.PublishedIPv6.IP.To4() != nil {
			return nil, fmt.Errorf("network on %s: published IPv6 subnet %v is not IPv6", n.Bridge, n.PublishedIPv6)
		}
		els = append(els, element{set: setDNAT6, key: br})
		subnets = append(slices.Clip(subnets), n.PublishedIPv6)
	}
	for _, sn := range subnets {
		first := sn.IP.Mask(sn.Mask)
		if first == nil {
			return nil, fmt.Errorf("network on %s: subnet %v: bad mask", n.Bridge, sn)
		}
		last := make(net.IP, len(first))
		for i := range first {
			last[i] = first[i] | ^sn.Mask[i]
		}
		set := setSubnets4
		if first4 := first.To4(); first4 != nil && len(sn.Mask) == net.IPv4len {
			first, last = first4, last.To4()
		} else {
			set = setSubnets6
			first, last = first.To16(), last.To16()
		}
		els = append(els, element{set: set, key: cat2(first, br), keyEnd: cat2(last, br)})
	}
	return els, nil
}

// networkFlagSets are the sets a network's bridge may be in besides bridges
// and bridge_pairs: removing a network removes it from all of them.
var networkFlagSets = []*setSpec{setMasq, setInternal, setNoICC, setRouted, setDNAT6}

func (ep Endpoint) String() string {
	return fmt.Sprintf("endpoint %s on %s", ep.Port, ep.Bridge)
}

// LinkLocal is the IPv6 link-local address the kernel gives an interface
// with this MAC (addr_gen_mode eui64, the default).
func LinkLocal(mac net.HardwareAddr) net.IP {
	if len(mac) != 6 {
		return nil
	}
	return net.IP{0xfe, 0x80, 0, 0, 0, 0, 0, 0, mac[0] ^ 2, mac[1], mac[2], 0xff, 0xfe, mac[3], mac[4], mac[5]}
}

// elements are the endpoint's elements on network n (whose bridge it must be on).
func (ep Endpoint) elements(n Network) ([]element, error) {
	port, err := ifname("port", ep.Port)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", ep, err)
	}
	if ep.Bridge != n.Bridge {
		return nil, fmt.Errorf("%s: its network is on bridge %q", ep, n.Bridge)
	}
	if len(ep.MAC) != 6 || ep.MAC[0]&1 != 0 || bytes.Equal(ep.MAC, make([]byte, 6)) {
		return nil, fmt.Errorf("%s: MAC %q: want a unicast Ethernet address", ep, ep.MAC)
	}
	els := []element{
		{set: setPorts, key: port},
		{set: setMACs, key: cat2(port, pad4(nil, ep.MAC))},
	}
	if !n.AllowSpoofing {
		els = append(els, element{set: setGuarded, key: port})
	}
	ips := append([]net.IP{LinkLocal(ep.MAC)}, ep.IPs...)
	for _, ip := range ips {
		switch {
		case ip.To4() != nil:
			ip = ip.To4()
		case len(ip) == net.IPv6len:
		default:
			return nil, fmt.Errorf("%s: address %q is not an IP address", ep, ip)
		}
		if ip.IsUnspecified() || ip.IsLoopback() || ip.IsMulticast() || ip.Equal(net.IPv4bcast) {
			return nil, fmt.Errorf("%s: address %s cannot be a container's", ep, ip)
		}
		set := setAddrs6
		if len(ip) == net.IPv4len {
			set = setAddrs4
		}
		els = append(els, element{set: set, key: cat2(port, ip)})
	}
	return dedup(els), nil
}

var protoNumbers = map[string]byte{"tcp": 6, "udp": 17, "sctp": 132}

// pad4 appends b padded to a multiple of 4 bytes, as concatenations are laid
// out in 32-bit registers.
func pad4(dst, b []byte) []byte {
	dst = append(dst, b...)
	for len(b)%4 != 0 {
		dst = append(dst, 0)
		b = append(b, 0)
	}
	return dst
}

func be16(v uint16) []byte { return binary.BigEndian.AppendUint16(nil, v) }

func (p Port) element() (element, error) {
	proto, ok := protoNumbers[p.Proto]
	if !ok {
		return element{}, fmt.Errorf("port %s: protocol %q: want tcp, udp or sctp", p, p.Proto)
	}
	if p.HostPort == 0 || p.ContainerPort == 0 {
		return element{}, fmt.Errorf("port %s: port 0 cannot be published", p)
	}
	cip, v4 := p.ContainerIP.To4(), true
	if cip == nil {
		cip, v4 = p.ContainerIP.To16(), false
	}
	if cip == nil {
		return element{}, fmt.Errorf("port %s: container address %q is not an IP address", p, p.ContainerIP)
	}
	val := pad4(append([]byte{}, cip...), be16(p.ContainerPort))
	protoPort := pad4(pad4(nil, []byte{proto}), be16(p.HostPort))

	if p.HostIP == nil || p.HostIP.IsUnspecified() {
		if p.HostIP != nil && (p.HostIP.To4() != nil) != v4 {
			return element{}, fmt.Errorf("port %s: host address and container address are of different families", p)
		}
		set := mapPorts4A
		if !v4 {
			set = mapPorts6A
		}
		return element{set: set, key: protoPort, val: val}, nil
	}
	hip := p.HostIP.To4()
	if (hip != nil) != v4 {
		return element{}, fmt.Errorf("port %s: host address and container address are of different families", p)
	}
	set := mapPorts4
	if !v4 {
		hip, set = p.HostIP.To16(), mapPorts6
	}
	return element{set: set, key: append(append([]byte{}, hip...), protoPort...), val: val}, nil
}

func networkElements(nets []Network) ([]element, error) {
	var all []element
	seen := map[string][]element{}
	for _, n := range nets {
		els, err := n.elements()
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[n.Bridge]; ok {
			if !sameElements(els, prev) {
				return nil, fmt.Errorf("two networks on bridge %s, with different settings", n.Bridge)
			}
			continue
		}
		seen[n.Bridge] = els
		all = append(all, els...)
	}
	return all, nil
}

// endpointElements finds each endpoint's network by its bridge.
func endpointElements(nets []Network, eps []Endpoint) ([]element, error) {
	byBridge := map[string]Network{}
	for _, n := range nets {
		byBridge[n.Bridge] = n
	}
	var all []element
	seen := map[string]Endpoint{}
	for _, ep := range eps {
		n, ok := byBridge[ep.Bridge]
		if !ok {
			return nil, fmt.Errorf("%s: no network on that bridge", ep)
		}
		els, err := ep.elements(n)
		if err != nil {
			return nil, err
		}
		if prev, ok := seen[ep.Port]; ok {
			if pe, _ := prev.elements(byBridge[prev.Bridge]); !sameElements(els, pe) {
				return nil, fmt.Errorf("%s and %s: two endpoints on one port", prev, ep)
			}
			continue
		}
		seen[ep.Port] = ep
		all = append(all, els...)
	}
	return all, nil
}

func sameElements(a, b []element) bool {
	if len(a) != len(b) {
		return false
	}
	ids := map[string]bool{}
	for _, e := range a {
		ids[e.id()+"/"+string(e.keyEnd)] = true
	}
	for _, e := range b {
		if !ids[e.id()+"/"+string(e.keyEnd)] {
			return false
		}
	}
	return true
}

func portElements(ports []Port) ([]element, error) {
	all := make([]element, 0, len(ports))
	for _, p := range ports {
		e, err := p.element()
		if err != nil {
			return nil, err
		}
		all = append(all, e)
	}
	return all, nil
}
