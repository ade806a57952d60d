package topology

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/firewall"
)

// Tables is what ctnet's two nftables tables hold, read back from the
// kernel (package firewall is the only writer; this is a reader of the same
// fixed layout: every fact is an element of a set or a map).
type Tables struct {
	Inet   bool `json:"inet"`   // table inet ctnet is there
	Bridge bool `json:"bridge"` // table bridge ctnet is there

	Bridges  map[string]bool           `json:"bridges,omitempty"`          // set bridges
	Masq     map[string]bool           `json:"masq_bridges,omitempty"`     // masquerade to the outside
	Internal map[string]bool           `json:"internal_bridges,omitempty"` // no forwarding in or out
	NoICC    map[string]bool           `json:"noicc_bridges,omitempty"`    // ports may not talk to each other
	Routed   map[string]bool           `json:"routed_bridges,omitempty"`   // the outside may open any port
	DNAT6    map[string]bool           `json:"dnat6_bridges,omitempty"`    // IPv4-only: IPv6 clients of published ports via a private /64
	Subnets  map[string][]netip.Prefix `json:"subnets,omitempty"`          // bridge → its subnets (subnets4/6)
	Ports    []PortMap                 `json:"ports,omitempty"`            // the four DNAT maps

	Endpoints map[string]bool         `json:"endpoints,omitempty"`     // bridge ctnet ports: checked frames
	Guarded   map[string]bool         `json:"guarded_ports,omitempty"` // bound to MAC and addresses
	MACs      map[string][]string     `json:"port_macs,omitempty"`
	Addrs     map[string][]netip.Addr `json:"port_addrs,omitempty"`
}

// PortMap is one element of a DNAT map: HostIP invalid means every host
// address of ContainerIP's family.
type PortMap struct {
	Proto         string     `json:"proto"`
	HostIP        netip.Addr `json:"host_ip,omitzero"`
	HostPort      uint16     `json:"host_port"`
	ContainerIP   netip.Addr `json:"container_ip"`
	ContainerPort uint16     `json:"container_port"`
	Map           string     `json:"map"` // which map holds it
}

func (p PortMap) String() string {
	host := "*"
	if p.HostIP.IsValid() {
		host = p.HostIP.String()
	}
	return fmt.Sprintf("%s %s:%d -> %s", p.Proto, host, p.HostPort,
		netip.AddrPortFrom(p.ContainerIP, p.ContainerPort))
}

// Key is what identifies the element: its map (a family), one host port, one address.
func (p PortMap) Key() string {
	return fmt.Sprintf("%s/%s/%s/%d", p.Map, p.Proto, p.HostIP, p.HostPort)
}

// FromFirewall is the element a firewall.Port becomes.
func FromFirewall(fp firewall.Port) PortMap {
	p := PortMap{Proto: fp.Proto, HostPort: fp.HostPort, ContainerPort: fp.ContainerPort}
	p.ContainerIP, _ = netip.AddrFromSlice(fp.ContainerIP)
	p.ContainerIP = p.ContainerIP.Unmap()
	if fp.HostIP != nil && !fp.HostIP.IsUnspecified() {
		p.HostIP, _ = netip.AddrFromSlice(fp.HostIP)
		p.HostIP = p.HostIP.Unmap()
	}
	is4 := p.ContainerIP.Is4()
	switch {
	case is4 && p.HostIP.IsValid():
		p.Map = "ports4_addr"
	case is4:
		p.Map = "ports4_any"
	case p.HostIP.IsValid():
		p.Map = "ports6_addr"
	default:
		p.Map = "ports6_any"
	}
	return p
}

var protoNames = map[byte]string{unix.IPPROTO_TCP: "tcp", unix.IPPROTO_UDP: "udp", unix.IPPROTO_SCTP: "sctp"}

// ReadTables reads ctnet's tables in the namespace open as nsFd. Missing
// tables are not errors: Inet/Bridge say so.
func ReadTables(nsFd int) (*Tables, error) {
	c, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		return nil, fmt.Errorf("nftables: %w", err)
	}
	t := &Tables{
		Bridges: map[string]bool{}, Masq: map[string]bool{}, Internal: map[string]bool{}, NoICC: map[string]bool{},
		Routed: map[string]bool{}, DNAT6: map[string]bool{}, Subnets: map[string][]netip.Prefix{}, Endpoints: map[string]bool{},
		Guarded: map[string]bool{}, MACs: map[string][]string{}, Addrs: map[string][]netip.Addr{},
	}
	inet := &nftables.Table{Name: firewall.TableName, Family: nftables.TableFamilyINet}
	br := &nftables.Table{Name: firewall.TableName, Family: nftables.TableFamilyBridge}
	if t.Inet, err = hasTable(c, inet); err != nil {
		return nil, err
	}
	if t.Bridge, err = hasTable(c, br); err != nil {
		return nil, err
	}
	read := func(tab *nftables.Table, name string, fn func(e nftables.SetElement)) error {
		s, err := c.GetSetByName(tab, name)
		if err != nil {
			if errors.Is(err, os.ErrNotExist) || errors.Is(err, unix.ENOENT) {
				return nil // an altered table: the difference is drift, not a failure
			}
			return fmt.Errorf("nftables: set %s: %w", name, err)
		}
		els, err := c.GetSetElements(s)
		if err != nil {
			return fmt.Errorf("nftables: set %s: elements: %w", name, err)
		}
		for _, e := range els {
			fn(e)
		}
		return nil
	}
	var errs []error
	if t.Inet {
		for name, m := range map[string]map[string]bool{"bridges": t.Bridges, "masq_bridges": t.Masq,
			"internal_bridges": t.Internal, "noicc_bridges": t.NoICC, "routed_bridges": t.Routed, "dnat6_bridges": t.DNAT6} {
			errs = append(errs, read(inet, name, func(e nftables.SetElement) { m[ifname(e.Key)] = true }))
		}
		for _, fam := range []int{4, 16} {
			name := map[int]string{4: "subnets4", 16: "subnets6"}[fam]
			errs = append(errs, read(inet, name, func(e nftables.SetElement) {
				if len(e.Key) < fam+16 || len(e.KeyEnd) < fam {
					return
				}
				first, _ := netip.AddrFromSlice(e.Key[:fam])
				last, _ := netip.AddrFromSlice(e.KeyEnd[:fam])
				if p, ok := rangePrefix(first, last); ok {
					b := ifname(e.Key[fam:])
					t.Subnets[b] = append(t.Subnets[b], p)
				}
			}))
		}
		for _, m := range []struct {
			name   string
			hostIP int // bytes of the host address in the key, 0 for none
			addr   int // bytes of the container address in the value
		}{{"ports4_addr", 4, 4}, {"ports4_any", 0, 4}, {"ports6_addr", 16, 16}, {"ports6_any", 0, 16}} {
			errs = append(errs, read(inet, m.name, func(e nftables.SetElement) {
				if len(e.Key) < m.hostIP+8 || len(e.Val) < m.addr+4 {
					return
				}
				p := PortMap{Map: m.name, Proto: protoNames[e.Key[m.hostIP]],
					HostPort:      binary.BigEndian.Uint16(e.Key[m.hostIP+4:]),
					ContainerPort: binary.BigEndian.Uint16(e.Val[m.addr:])}
				if m.hostIP > 0 {
					p.HostIP, _ = netip.AddrFromSlice(e.Key[:m.hostIP])
				}
				p.ContainerIP, _ = netip.AddrFromSlice(e.Val[:m.addr])
				t.Ports = append(t.Ports, p)
			}))
		}
	}
	if t.Bridge {
		errs = append(errs, read(br, "ports", func(e nftables.SetElement) { t.Endpoints[ifname(e.Key)] = true }))
		errs = append(errs, read(br, "guarded_ports", func(e nftables.SetElement) { t.Guarded[ifname(e.Key)] = true }))
		errs = append(errs, read(br, "port_macs", func(e nftables.SetElement) {
			if len(e.Key) >= 22 {
				p := ifname(e.Key[:16])
				t.MACs[p] = append(t.MACs[p], net.HardwareAddr(e.Key[16:22]).String())
			}
		}))
		for _, n := range []int{4, 16} {
			errs = append(errs, read(br, map[int]string{4: "port_addrs4", 16: "port_addrs6"}[n], func(e nftables.SetElement) {
				if len(e.Key) >= 16+n {
					p := ifname(e.Key[:16])
					a, _ := netip.AddrFromSlice(e.Key[16 : 16+n])
					t.Addrs[p] = append(t.Addrs[p], a)
				}
			}))
		}
	}
	return t, errors.Join(errs...)
}

func hasTable(c *nftables.Conn, t *nftables.Table) (bool, error) {
	tables, err := c.ListTablesOfFamily(t.Family)
	if err != nil {
		return false, fmt.Errorf("nftables: list tables: %w", err)
	}
	for _, have := range tables {
		if have.Name == t.Name {
			return true, nil
		}
	}
	return false, nil
}

func ifname(b []byte) string {
	if i := bytes.IndexByte(b, 0); i >= 0 {
		b = b[:i]
	}
	return strings.Clone(string(b))
}

// rangePrefix is the prefix spanning exactly first..last, if there is one.
func rangePrefix(first, last netip.Addr) (netip.Prefix, bool) {
	for bits := 0; bits <= first.BitLen(); bits++ {
		p := netip.PrefixFrom(first, bits)
		if p.Masked().Addr() != first {
			continue
		}
		if lastOf(p) == last {
			return p, true
		}
	}
	return netip.Prefix{}, false
}

func lastOf(p netip.Prefix) netip.Addr {
	b := p.Addr().AsSlice()
	for i := range b {
		keep := p.Bits() - i*8
		switch {
		case keep >= 8:
		case keep <= 0:
			b[i] = 0xff
		default:
			b[i] |= byte(0xff >> keep)
		}
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
