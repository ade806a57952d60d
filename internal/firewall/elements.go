package firewall

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
)

// Network is what the packet filter needs to know about one bridge network.
type Network struct {
	Bridge     string       // e.g. "ctnet0"
	Subnets    []*net.IPNet // v4 and/or v6; used to recognise hairpin traffic
	Masquerade bool         // NAT traffic forwarded from this bridge to a non-ctnet interface
	Internal   bool         // no forwarding between this bridge and any other interface
	ICC        bool         // containers on this bridge may talk to each other
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
	set    string
	key    []byte
	keyEnd []byte // last key of a range, for interval sets
	val    []byte // nil for plain sets
}

func (e element) id() string { return e.set + "/" + string(e.key) }

func ifname(name string) ([]byte, error) {
	if name == "" || len(name) >= 16 || strings.ContainsRune(name, 0) {
		return nil, fmt.Errorf("bridge name %q: must be 1 to 15 bytes", name)
	}
	b := make([]byte, 16)
	copy(b, name)
	return b, nil
}

func (n Network) elements() ([]element, error) {
	br, err := ifname(n.Bridge)
	if err != nil {
		return nil, fmt.Errorf("network on %q: %w", n.Bridge, err)
	}
	els := []element{
		{set: setBridges, key: br},
		{set: setPairs, key: append(append([]byte{}, br...), br...)},
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
	for _, sn := range n.Subnets {
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
		els = append(els, element{set: set,
			key:    append(append([]byte{}, first...), br...),
			keyEnd: append(append([]byte{}, last...), br...)})
	}
	return els, nil
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
	for _, n := range nets {
		els, err := n.elements()
		if err != nil {
			return nil, err
		}
		all = append(all, els...)
	}
	return all, nil
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
