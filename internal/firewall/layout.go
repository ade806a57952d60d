package firewall

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The layout is fixed: every per-network, per-endpoint and per-port fact is
// an element of one of these sets, so no operation after creation ever adds
// or removes a rule.

// TableName is the name of the nftables tables ctnet owns: inet ctnet (NAT,
// forwarding, the host) and bridge ctnet (what enters a bridge from its ports).
const TableName = "ctnet"

var (
	inetTable   = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}
	bridgeTable = &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
)

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return fmt.Sprint(f)
}

// tableName is how nft names t: "inet ctnet".
func tableName(t *nftables.Table) string { return familyName(t.Family) + " " + t.Name }

var (
	ifnameType   = nftables.TypeIFName
	ifnamePair   = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIFName)
	protoPort    = nftables.MustConcatSetType(nftables.TypeInetProto, nftables.TypeInetService)
	addr4Port    = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetService)
	addr6Port    = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetService)
	addr4IfName  = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeIFName)
	addr6IfName  = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeIFName)
	addr4PrtPort = nftables.MustConcatSetType(nftables.TypeIPAddr, nftables.TypeInetProto, nftables.TypeInetService)
	addr6PrtPort = nftables.MustConcatSetType(nftables.TypeIP6Addr, nftables.TypeInetProto, nftables.TypeInetService)
	ifnameMAC    = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeEtherAddr)
	ifnameAddr4  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIPAddr)
	ifnameAddr6  = nftables.MustConcatSetType(nftables.TypeIFName, nftables.TypeIP6Addr)
)

// Kinds group sets for the change summary of Ensure.
type setKind int

const (
	kindNetwork setKind = iota
	kindEndpoint
	kindPort
)

var kindNames = map[setKind]string{kindNetwork: "network", kindEndpoint: "endpoint", kindPort: "port"}

type setSpec struct {
	table    *nftables.Table
	name     string
	key      nftables.SetDatatype
	data     nftables.SetDatatype // zero for plain sets
	kind     setKind
	interval bool
}

func (s *setSpec) isMap() bool { return s.data.Bytes != 0 }

func (s *setSpec) set() *nftables.Set {
	set := &nftables.Set{
		Table:         s.table,
		Name:          s.name,
		KeyType:       s.key,
		DataType:      s.data,
		IsMap:         s.isMap(),
		Interval:      s.interval,
		Concatenation: len(nftables.ConcatSetTypeElements(s.key)) > 1,
	}
	if s.key.GetNFTMagic() == ifnameType.GetNFTMagic() {
		// nft keeps strings in host byte order and prints "" without this hint.
		set.KeyByteOrder = binaryutil.NativeEndian
	}
	return set
}

// Sets of inet ctnet.
var (
	setBridges  = &setSpec{table: inetTable, name: "bridges", key: ifnameType}          // every ctnet bridge
	setMasq     = &setSpec{table: inetTable, name: "masq_bridges", key: ifnameType}     // traffic to the outside is masqueraded
	setInternal = &setSpec{table: inetTable, name: "internal_bridges", key: ifnameType} // talk only to themselves and the host
	setNoICC    = &setSpec{table: inetTable, name: "noicc_bridges", key: ifnameType}    // ports may not talk to each other
	setRouted   = &setSpec{table: inetTable, name: "routed_bridges", key: ifnameType}   // the outside may open connections to any port
	setPairs    = &setSpec{table: inetTable, name: "bridge_pairs", key: ifnamePair}     // "br . br" for every bridge: matches iif == oif
	setDNAT6    = &setSpec{table: inetTable, name: "dnat6_bridges", key: ifnameType}    // IPv4-only: IPv6 only as the DNAT target of published ports
	setSubnets4 = &setSpec{table: inetTable, name: "subnets4", key: addr4IfName, interval: true}
	setSubnets6 = &setSpec{table: inetTable, name: "subnets6", key: addr6IfName, interval: true}
	mapPorts4   = &setSpec{table: inetTable, name: "ports4_addr", key: addr4PrtPort, data: addr4Port, kind: kindPort} // ip daddr . l4proto . dport : addr . port
	mapPorts4A  = &setSpec{table: inetTable, name: "ports4_any", key: protoPort, data: addr4Port, kind: kindPort}     // l4proto . dport : addr . port (all host addresses)
	mapPorts6   = &setSpec{table: inetTable, name: "ports6_addr", key: addr6PrtPort, data: addr6Port, kind: kindPort}
	mapPorts6A  = &setSpec{table: inetTable, name: "ports6_any", key: protoPort, data: addr6Port, kind: kindPort}
)

// Sets of bridge ctnet, keyed by the endpoint's port (host-side veth): the
// kernel ctnet must run on may lack `meta ibrname` (NFT_BRIDGE_META), so a
// port is known by its name only.
var (
	setPorts   = &setSpec{table: bridgeTable, name: "ports", key: ifnameType, kind: kindEndpoint}         // every endpoint
	setGuarded = &setSpec{table: bridgeTable, name: "guarded_ports", key: ifnameType, kind: kindEndpoint} // endpoints bound to their MAC and addresses
	setMACs    = &setSpec{table: bridgeTable, name: "port_macs", key: ifnameMAC, kind: kindEndpoint}
	setAddrs4  = &setSpec{table: bridgeTable, name: "port_addrs4", key: ifnameAddr4, kind: kindEndpoint}
	setAddrs6  = &setSpec{table: bridgeTable, name: "port_addrs6", key: ifnameAddr6, kind: kindEndpoint}
)

type tableSpec struct {
	table  *nftables.Table
	sets   []*setSpec
	chains []chainSpec // regular (hookless) chains first: base chains jump to them
}

var tableSpecs = []*tableSpec{
	{table: inetTable, chains: inetChains, sets: []*setSpec{setBridges, setMasq, setInternal, setNoICC, setRouted, setPairs, setDNAT6,
		setSubnets4, setSubnets6, mapPorts4, mapPorts4A, mapPorts6, mapPorts6A}},
	{table: bridgeTable, chains: bridgeChains, sets: []*setSpec{setPorts, setGuarded, setMACs, setAddrs4, setAddrs6}},
}

type chainSpec struct {
	name   string
	typ    nftables.ChainType
	hook   *nftables.ChainHook
	prio   *nftables.ChainPriority
	policy *nftables.ChainPolicy
	rules  []ruleSpec
}

type sets map[*setSpec]*nftables.Set

type ruleSpec struct {
	comment string
	exprs   func(s sets) []expr.Any
}

var (
	accept       = nftables.ChainPolicyAccept
	prioDstNAT   = nftables.ChainPriorityNATDest
	prioSrcNAT   = nftables.ChainPriorityNATSource
	prioFilter   = nftables.ChainPriorityFilter
	prioBrFilter = nftables.ChainPriorityRef(-200) // NF_BR_PRI_FILTER_BRIDGED: "filter" in the bridge family
	rtnLocal     = binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)
	loopback6    = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	unspecified6 = make([]byte, 16)
	ctDNAT       = uint32(0x20) // IPS_DST_NAT
	ctEstRel     = expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
)

var inetChains = []chainSpec{
	{name: "published", rules: []ruleSpec{
		{"published ports on one IPv4 host address", func(s sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV4), ip4Daddr(1), l4proto(9), thDport(10),
				mapLookup(1, s[mapPorts4]), dnat(unix.NFPROTO_IPV4, 9))
		}},
		{"published ports on all IPv4 host addresses", func(s sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV4), l4proto(1), thDport(9),
				mapLookup(1, s[mapPorts4A]), dnat(unix.NFPROTO_IPV4, 9))
		}},
		{"published ports on one IPv6 host address", func(s sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), ip6Daddr(1), l4proto(2), thDport(13),
				mapLookup(1, s[mapPorts6]), dnat(unix.NFPROTO_IPV6, 2))
		}},
		{"published ports on all IPv6 host addresses", func(s sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), l4proto(1), thDport(9),
				mapLookup(1, s[mapPorts6A]), dnat(unix.NFPROTO_IPV6, 2))
		}},
	}},
	{name: "intra_bridge", rules: []ruleSpec{
		{"published ports stay reachable from siblings", func(sets) []expr.Any {
			return cat(ctStatus(ctDNAT), verdict(expr.VerdictAccept, ""))
		}},
		{"icc=false", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setNoICC], false), verdict(expr.VerdictDrop, ""))
		}},
		{"same bridge", func(sets) []expr.Any {
			return cat(verdict(expr.VerdictAccept, ""))
		}},
	}},
	// A container may reach another network's published ports through a host
	// address, as from anywhere else; nothing else crosses, not even a packet
	// that conntrack would call a reply: a forged one would otherwise be let
	// into another network's flows. The source must be on the input bridge's
	// own subnets, so a packet "from the outside" cannot ride a DNAT flow either.
	{name: "between_bridges", rules: []ruleSpec{
		{"published ports of another network", func(s sets) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 4, 1),
				meta(expr.MetaKeyIIFNAME, 9), lookup(1, s[setSubnets4], false), verdict(expr.VerdictAccept, ""))
		}},
		{"published ports of another network", func(s sets) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 8, 16, 1),
				meta(expr.MetaKeyIIFNAME, 2), lookup(1, s[setSubnets6], false), verdict(expr.VerdictAccept, ""))
		}},
		{"network isolation", func(sets) []expr.Any {
			return cat(verdict(expr.VerdictDrop, ""))
		}},
	}},
	{name: "prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, prio: prioDstNAT, policy: &accept, rules: []ruleSpec{
		// Loopback destinations arriving from outside must never be translated:
		// Docker's DNAT of 127.0.0.1 ports let neighbours reach them via the host's MAC.
		{"no loopback from the wire", func(sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 16, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictReturn, ""))
		}},
		{"no loopback from the wire", func(sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 24, 16, 1),
				cmpEq(1, loopback6), verdict(expr.VerdictReturn, ""))
		}},
		{"to this host", func(sets) []expr.Any {
			return cat(fibDaddrLocal(), verdict(expr.VerdictJump, "published"))
		}},
	}},
	{name: "output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, prio: prioDstNAT, policy: &accept, rules: []ruleSpec{
		// A reply to ::1 cannot come back from a container (IPv6 drops
		// loopback addresses on real devices): ports on [::1] are served by
		// rewriting sockets (package loopback), and a DNAT here would only
		// turn "connection refused" into a hang.
		{"[::1] is not translated", func(sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 24, 16, 1),
				cmpEq(1, loopback6), verdict(expr.VerdictReturn, ""))
		}},
		{"from this host", func(sets) []expr.Any {
			return cat(fibDaddrLocal(), verdict(expr.VerdictJump, "published"))
		}},
	}},
	{name: "postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, prio: prioSrcNAT, policy: &accept, rules: []ruleSpec{
		// A container reaching a published port of its own bridge via a host
		// address must get replies from the host, not straight from the sibling.
		// Matched by source subnet: with br_netfilter this packet is bridged
		// and postrouting sees no input interface.
		{"hairpin", func(s sets) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 4, 1),
				meta(expr.MetaKeyOIFNAME, 9), lookup(1, s[setSubnets4], false), &expr.Masq{})
		}},
		{"hairpin", func(s sets) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 8, 16, 1),
				meta(expr.MetaKeyOIFNAME, 2), lookup(1, s[setSubnets6], false), &expr.Masq{})
		}},
		// IPv6 clients of an IPv4-only network's published ports reach its
		// containers' private addresses (Network.PublishedIPv6), which have
		// no route back to them: the gateway's private address is the source.
		{"IPv6 to an IPv4-only network", func(s sets) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV6),
				meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setDNAT6], false), &expr.Masq{})
		}},
		// Ports published on 127.0.0.1 leave with a loopback source (needs
		// route_localnet on the bridge); the container could not answer it.
		{"from host loopback", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 1, 1),
				cmpEq(1, []byte{127}), &expr.Masq{})
		}},
		{"to the outside", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setMasq], false),
				meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], true), &expr.Masq{})
		}},
	}},
	// Isolation comes before "replies": conntrack matches a forged packet to
	// a flow as readily as a real one.
	{name: "forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, prio: prioFilter, policy: &accept, rules: []ruleSpec{
		{"no loopback source from containers", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictDrop, ""))
		}},
		// iif == oif: routed hairpin, or bridged frames when br_netfilter is loaded.
		{"within one bridge", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), meta(expr.MetaKeyOIFNAME, 2),
				lookup(1, s[setPairs], false), verdict(expr.VerdictGoto, "intra_bridge"))
		}},
		{"internal network", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setInternal], false), verdict(expr.VerdictDrop, ""))
		}},
		{"internal network", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setInternal], false), verdict(expr.VerdictDrop, ""))
		}},
		// Its containers' private IPv6 addresses exist for published ports;
		// a container that routed other IPv6 traffic with them would get past
		// the network's having no IPv6.
		{"IPv4-only network: IPv6 of published ports only", func(s sets) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setDNAT6], false),
				ctStatusNone(ctDNAT), verdict(expr.VerdictDrop, ""))
		}},
		{"between networks", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], false), verdict(expr.VerdictGoto, "between_bridges"))
		}},
		{"replies", func(sets) []expr.Any {
			return cat(ctState(ctEstRel), verdict(expr.VerdictAccept, ""))
		}},
		{"published ports", func(sets) []expr.Any {
			return cat(ctStatus(ctDNAT), verdict(expr.VerdictAccept, ""))
		}},
		// A neighbour that routes a container subnet via this host would
		// otherwise reach every port of every container.
		{"only published ports from outside", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], false),
				meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setRouted], true), verdict(expr.VerdictDrop, ""))
		}},
	}},
	// route_localnet on a bridge would otherwise let containers reach the
	// host's 127.0.0.1 services (CVE-2020-8558) and, with a forged loopback
	// source, inject into the host's own loopback flows. The only loopback
	// traffic a container takes part in is a port published on 127.0.0.1:
	// DNATed and masqueraded on the way in, so its replies reach this hook
	// with their destination already translated back to 127.0.0.1.
	{name: "input", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, prio: prioFilter, policy: &accept, rules: []ruleSpec{
		{"no loopback source from containers", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictDrop, ""))
		}},
		{"replies of ports published on 127.0.0.1", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 16, 1, 1), cmpEq(1, []byte{127}),
				&expr.Ct{Key: expr.CtKeyDIRECTION, Register: 1}, cmpEq(1, []byte{1}), // IP_CT_DIR_REPLY
				ctStatus(ctDNAT), verdict(expr.VerdictAccept, ""))
		}},
		{"no host loopback from containers", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 16, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictDrop, ""))
		}},
	}},
}

// Ethertypes as the payload expression reads them (network byte order).
var (
	etherARP    = []byte{0x08, 0x06}
	etherIPv4   = []byte{0x08, 0x00}
	etherIPv6   = []byte{0x86, 0xdd}
	ether8021Q  = []byte{0x81, 0x00}
	ether8021AD = []byte{0x88, 0xa8}
)

// ICMP and ICMPv6 types.
const (
	icmpRedirect    = 5
	icmp6RouterAdv  = 134
	icmp6NeighSol   = 135
	icmp6NeighAdv   = 136
	icmp6Redirect   = 137
	icmp6MLD2Report = 143
)

// The bridge table sees every frame a container sends, before the bridge
// forwards it to a sibling or hands it to the host, with or without
// br_netfilter; inet hooks never see frames between two ports of a bridge.
var bridgeChains = []chainSpec{
	// Binding a port to its MAC and addresses: otherwise a container can
	// answer ARP or ND for a sibling's address and take its traffic (the
	// bridge would even learn the sibling's MAC on the wrong port), or send
	// with another's source address. ARP's and ND's layouts are checked by
	// the receiving kernel, which drops lengths other than Ethernet's and IPv4's.
	{name: "antispoof", rules: []ruleSpec{
		{"Ethernet source", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseLLHeader, 6, 6, 2),
				lookup(1, s[setMACs], true), verdict(expr.VerdictDrop, ""))
		}},
		{"ARP sender", func(s sets) []expr.Any {
			return cat(etherType(etherARP), meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseNetworkHeader, 8, 6, 2),
				lookup(1, s[setMACs], true), verdict(expr.VerdictDrop, ""))
		}},
		{"ARP sender", func(s sets) []expr.Any {
			return cat(etherType(etherARP), meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseNetworkHeader, 14, 4, 2),
				lookup(1, s[setAddrs4], false), verdict(expr.VerdictAccept, ""))
		}},
		{"ARP probe (RFC 5227)", func(s sets) []expr.Any {
			return cat(etherType(etherARP), payload(expr.PayloadBaseNetworkHeader, 14, 4, 1),
				cmpEq(1, make([]byte, 4)), verdict(expr.VerdictAccept, ""))
		}},
		{"IPv4 source", func(s sets) []expr.Any {
			return cat(etherType(etherIPv4), meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseNetworkHeader, 12, 4, 2),
				lookup(1, s[setAddrs4], false), verdict(expr.VerdictAccept, ""))
		}},
		{"DHCP client without an address", func(s sets) []expr.Any {
			return cat(etherType(etherIPv4), payload(expr.PayloadBaseNetworkHeader, 12, 4, 1), cmpEq(1, make([]byte, 4)),
				l4proto(1), cmpEq(1, []byte{unix.IPPROTO_UDP}),
				payload(expr.PayloadBaseTransportHeader, 2, 2, 1), cmpEq(1, be16(67)), verdict(expr.VerdictAccept, ""))
		}},
		// The neighbour caches of the host and the siblings believe the
		// target of an advertisement, whatever its source.
		{"neighbour advertisements for own addresses only", func(s sets) []expr.Any {
			return cat(etherType(etherIPv6), l4proto(1), cmpEq(1, []byte{unix.IPPROTO_ICMPV6}),
				payload(expr.PayloadBaseTransportHeader, 0, 1, 1), cmpEq(1, []byte{icmp6NeighAdv}),
				meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseTransportHeader, 8, 16, 2),
				lookup(1, s[setAddrs6], true), verdict(expr.VerdictDrop, ""))
		}},
		{"IPv6 source", func(s sets) []expr.Any {
			return cat(etherType(etherIPv6), meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseNetworkHeader, 8, 16, 2),
				lookup(1, s[setAddrs6], false), verdict(expr.VerdictAccept, ""))
		}},
		// Only for its own addresses: a probe for a sibling's tentative
		// address would make the sibling give it up.
		{"duplicate address detection", func(s sets) []expr.Any {
			return cat(etherType(etherIPv6), payload(expr.PayloadBaseNetworkHeader, 8, 16, 1), cmpEq(1, unspecified6),
				l4proto(1), cmpEq(1, []byte{unix.IPPROTO_ICMPV6}),
				payload(expr.PayloadBaseTransportHeader, 0, 1, 1), cmpEq(1, []byte{icmp6NeighSol}),
				meta(expr.MetaKeyIIFNAME, 1), payload(expr.PayloadBaseTransportHeader, 8, 16, 2),
				lookup(1, s[setAddrs6], false), verdict(expr.VerdictAccept, ""))
		}},
		// The kernel reports its solicited-node groups from :: while its
		// link-local address is still tentative.
		{"MLD before an address", func(s sets) []expr.Any {
			return cat(etherType(etherIPv6), payload(expr.PayloadBaseNetworkHeader, 8, 16, 1), cmpEq(1, unspecified6),
				l4proto(1), cmpEq(1, []byte{unix.IPPROTO_ICMPV6}),
				payload(expr.PayloadBaseTransportHeader, 0, 1, 1), cmpEq(1, []byte{icmp6MLD2Report}), verdict(expr.VerdictAccept, ""))
		}},
		{"anything else", func(sets) []expr.Any {
			return cat(verdict(expr.VerdictDrop, ""))
		}},
	}},
	{name: "from_port", rules: []ruleSpec{
		// The kernel strips a VLAN tag before the hook: a frame tagged with
		// VLAN 0 (twice) would carry what follows past every match here.
		{"no VLAN tags", func(sets) []expr.Any {
			return cat(payload(expr.PayloadBaseLLHeader, 12, 2, 1), cmpEq(1, ether8021Q), verdict(expr.VerdictDrop, ""))
		}},
		{"no VLAN tags", func(sets) []expr.Any {
			return cat(payload(expr.PayloadBaseLLHeader, 12, 2, 1), cmpEq(1, ether8021AD), verdict(expr.VerdictDrop, ""))
		}},
		// A container is never a router (CVE-2020-13401): an RA would give
		// the host and its siblings a default route through it, addresses
		// and an MTU; a redirect would move their routes to it.
		{"no router advertisements", func(sets) []expr.Any {
			return cat(l4proto(1), cmpEq(1, []byte{unix.IPPROTO_ICMPV6}),
				payload(expr.PayloadBaseTransportHeader, 0, 1, 1), cmpEq(1, []byte{icmp6RouterAdv}), verdict(expr.VerdictDrop, ""))
		}},
		{"no redirects", func(sets) []expr.Any {
			return cat(l4proto(1), cmpEq(1, []byte{unix.IPPROTO_ICMPV6}),
				payload(expr.PayloadBaseTransportHeader, 0, 1, 1), cmpEq(1, []byte{icmp6Redirect}), verdict(expr.VerdictDrop, ""))
		}},
		{"no redirects", func(sets) []expr.Any {
			return cat(l4proto(1), cmpEq(1, []byte{unix.IPPROTO_ICMP}),
				payload(expr.PayloadBaseTransportHeader, 0, 1, 1), cmpEq(1, []byte{icmpRedirect}), verdict(expr.VerdictDrop, ""))
		}},
		// Bridges have route_localnet=1 (ports published on 127.0.0.1), so
		// the host would take these; nothing a container sends has them.
		{"no loopback addresses", func(sets) []expr.Any {
			return cat(metaProtocol(etherIPv4), payload(expr.PayloadBaseNetworkHeader, 12, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictDrop, ""))
		}},
		{"no loopback addresses", func(sets) []expr.Any {
			return cat(metaProtocol(etherIPv4), payload(expr.PayloadBaseNetworkHeader, 16, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictDrop, ""))
		}},
		{"no loopback addresses", func(sets) []expr.Any {
			return cat(metaProtocol(etherIPv6), payload(expr.PayloadBaseNetworkHeader, 8, 16, 1),
				cmpEq(1, loopback6), verdict(expr.VerdictDrop, ""))
		}},
		{"no loopback addresses", func(sets) []expr.Any {
			return cat(metaProtocol(etherIPv6), payload(expr.PayloadBaseNetworkHeader, 24, 16, 1),
				cmpEq(1, loopback6), verdict(expr.VerdictDrop, ""))
		}},
		{"source binding", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setGuarded], false), verdict(expr.VerdictGoto, "antispoof"))
		}},
	}},
	{name: "prerouting", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookPrerouting, prio: prioBrFilter, policy: &accept, rules: []ruleSpec{
		{"from a container", func(s sets) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setPorts], false), verdict(expr.VerdictJump, "from_port"))
		}},
	}},
}

func (c chainSpec) chain(t *nftables.Table) *nftables.Chain {
	return &nftables.Chain{Name: c.name, Table: t, Type: c.typ, Hooknum: c.hook, Priority: c.prio, Policy: c.policy}
}

func comment(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

// addLayout queues the whole table (without elements) on c and returns its
// sets so that elements can be queued in the same batch.
func (ts *tableSpec) addLayout(c *nftables.Conn) (sets, error) {
	c.AddTable(ts.table)
	s := make(sets, len(ts.sets))
	for _, spec := range ts.sets {
		set := spec.set()
		if err := c.AddSet(set, nil); err != nil {
			return nil, fmt.Errorf("set %s: %w", spec.name, err)
		}
		s[spec] = set
	}
	chains := make([]*nftables.Chain, len(ts.chains))
	for i, cs := range ts.chains {
		chains[i] = c.AddChain(cs.chain(ts.table))
	}
	for i, cs := range ts.chains {
		for _, r := range cs.rules {
			c.AddRule(&nftables.Rule{Table: ts.table, Chain: chains[i], Exprs: r.exprs(s), UserData: comment(r.comment)})
		}
	}
	return s, nil
}

// Expression helpers; register numbers follow what nft itself generates so
// that `nft list` prints the rules in their usual form.

func cat(parts ...any) []expr.Any {
	var out []expr.Any
	for _, p := range parts {
		switch v := p.(type) {
		case expr.Any:
			out = append(out, v)
		case []expr.Any:
			out = append(out, v...)
		}
	}
	return out
}

func meta(k expr.MetaKey, reg uint32) expr.Any { return &expr.Meta{Key: k, Register: reg} }

func cmpEq(reg uint32, data []byte) expr.Any {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}

func nfproto(p byte) []expr.Any {
	return []expr.Any{meta(expr.MetaKeyNFPROTO, 1), cmpEq(1, []byte{p})}
}

// metaProtocol matches the ethertype the kernel parsed (after any VLAN tag).
func metaProtocol(ethertype []byte) []expr.Any {
	return []expr.Any{meta(expr.MetaKeyPROTOCOL, 1), cmpEq(1, ethertype)}
}

// etherType matches the Ethernet header's type field (a tagged frame shows
// its tag's type there).
func etherType(ethertype []byte) []expr.Any {
	return []expr.Any{payload(expr.PayloadBaseLLHeader, 12, 2, 1), cmpEq(1, ethertype)}
}

func payload(base expr.PayloadBase, off, n, reg uint32) expr.Any {
	return &expr.Payload{DestRegister: reg, Base: base, Offset: off, Len: n}
}

func ip4Daddr(reg uint32) expr.Any { return payload(expr.PayloadBaseNetworkHeader, 16, 4, reg) }
func ip6Daddr(reg uint32) expr.Any { return payload(expr.PayloadBaseNetworkHeader, 24, 16, reg) }
func thDport(reg uint32) expr.Any  { return payload(expr.PayloadBaseTransportHeader, 2, 2, reg) }
func l4proto(reg uint32) expr.Any  { return meta(expr.MetaKeyL4PROTO, reg) }

func lookup(reg uint32, s *nftables.Set, invert bool) expr.Any {
	return &expr.Lookup{SourceRegister: reg, SetName: s.Name, SetID: s.ID, Invert: invert}
}

func mapLookup(reg uint32, s *nftables.Set) expr.Any {
	return &expr.Lookup{SourceRegister: reg, DestRegister: 1, IsDestRegSet: true, SetName: s.Name, SetID: s.ID}
}

func dnat(family uint32, protoReg uint32) expr.Any {
	return &expr.NAT{Type: expr.NATTypeDestNAT, Family: family, RegAddrMin: 1, RegAddrMax: 1,
		RegProtoMin: protoReg, RegProtoMax: protoReg, Specified: true}
}

func ctBits(key expr.CtKey, bits uint32) []expr.Any {
	return []expr.Any{
		&expr.Ct{Key: key, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4,
			Mask: binaryutil.NativeEndian.PutUint32(bits), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
}

func ctStatus(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATUS, bits) }

func ctState(bits uint32) []expr.Any { return ctBits(expr.CtKeySTATE, bits) }

// ctStatusNone matches when none of bits is set.
func ctStatusNone(bits uint32) []expr.Any {
	e := ctBits(expr.CtKeySTATUS, bits)
	e[2].(*expr.Cmp).Op = expr.CmpOpEq
	return e
}

func fibDaddrLocal() []expr.Any {
	return []expr.Any{&expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true}, cmpEq(1, rtnLocal)}
}

func verdict(k expr.VerdictKind, chain string) expr.Any { return &expr.Verdict{Kind: k, Chain: chain} }
