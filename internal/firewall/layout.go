package firewall

import (
	"fmt"

	"github.com/google/nftables"
	"github.com/google/nftables/binaryutil"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// The layout is fixed: every per-network and per-port fact is an element of one
// of these sets, so no operation after creation ever adds or removes a rule.

// TableName is the one nftables table ctnet owns (family inet).
const TableName = "ctnet"

var table = &nftables.Table{Name: TableName, Family: nftables.TableFamilyINet}

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
)

// Set names. Kinds group them for the change summary of Ensure.
const (
	setBridges  = "bridges"          // every ctnet bridge
	setMasq     = "masq_bridges"     // bridges whose traffic is masqueraded to the outside
	setInternal = "internal_bridges" // bridges that talk only to themselves and the host
	setNoICC    = "noicc_bridges"    // bridges whose ports may not talk to each other
	setPairs    = "bridge_pairs"     // "br . br" for every bridge: matches iif == oif
	setSubnets4 = "subnets4"         // subnet . bridge (interval)
	setSubnets6 = "subnets6"
	mapPorts4   = "ports4_addr" // ip daddr . l4proto . dport : addr . port
	mapPorts4A  = "ports4_any"  // l4proto . dport : addr . port (all host addresses)
	mapPorts6   = "ports6_addr"
	mapPorts6A  = "ports6_any"
)

type setKind int

const (
	kindNetwork setKind = iota
	kindPort
)

type setSpec struct {
	name     string
	key      nftables.SetDatatype
	data     nftables.SetDatatype // zero for plain sets
	kind     setKind
	interval bool
}

func (s setSpec) isMap() bool { return s.data.Bytes != 0 }

func (s setSpec) set() *nftables.Set {
	set := &nftables.Set{
		Table:         table,
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

var setSpecs = []setSpec{
	{name: setBridges, key: ifnameType, kind: kindNetwork},
	{name: setMasq, key: ifnameType, kind: kindNetwork},
	{name: setInternal, key: ifnameType, kind: kindNetwork},
	{name: setNoICC, key: ifnameType, kind: kindNetwork},
	{name: setPairs, key: ifnamePair, kind: kindNetwork},
	{name: setSubnets4, key: addr4IfName, kind: kindNetwork, interval: true},
	{name: setSubnets6, key: addr6IfName, kind: kindNetwork, interval: true},
	{name: mapPorts4, key: addr4PrtPort, data: addr4Port, kind: kindPort},
	{name: mapPorts4A, key: protoPort, data: addr4Port, kind: kindPort},
	{name: mapPorts6, key: addr6PrtPort, data: addr6Port, kind: kindPort},
	{name: mapPorts6A, key: protoPort, data: addr6Port, kind: kindPort},
}

type chainSpec struct {
	name   string
	typ    nftables.ChainType
	hook   *nftables.ChainHook
	prio   *nftables.ChainPriority
	policy *nftables.ChainPolicy
	rules  []ruleSpec
}

type ruleSpec struct {
	comment string
	exprs   func(sets map[string]*nftables.Set) []expr.Any
}

// Chain names; regular (hookless) chains come first because base chains jump to them.
const (
	chainPublished   = "published"
	chainIntraBridge = "intra_bridge"
)

var (
	accept       = nftables.ChainPolicyAccept
	prioDstNAT   = nftables.ChainPriorityNATDest
	prioSrcNAT   = nftables.ChainPriorityNATSource
	prioFilter   = nftables.ChainPriorityFilter
	rtnLocal     = binaryutil.NativeEndian.PutUint32(unix.RTN_LOCAL)
	loopback6    = []byte{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1}
	ctDNAT       = uint32(0x20) // IPS_DST_NAT
	ctEstRel     = expr.CtStateBitESTABLISHED | expr.CtStateBitRELATED
	ctNewInvalid = expr.CtStateBitNEW | expr.CtStateBitINVALID
)

var chainSpecs = []chainSpec{
	{name: chainPublished, rules: []ruleSpec{
		{"published ports on one IPv4 host address", func(s map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV4), ip4Daddr(1), l4proto(9), thDport(10),
				mapLookup(1, s[mapPorts4]), dnat(unix.NFPROTO_IPV4, 9))
		}},
		{"published ports on all IPv4 host addresses", func(s map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV4), l4proto(1), thDport(9),
				mapLookup(1, s[mapPorts4A]), dnat(unix.NFPROTO_IPV4, 9))
		}},
		{"published ports on one IPv6 host address", func(s map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), ip6Daddr(1), l4proto(2), thDport(13),
				mapLookup(1, s[mapPorts6]), dnat(unix.NFPROTO_IPV6, 2))
		}},
		{"published ports on all IPv6 host addresses", func(s map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), l4proto(1), thDport(9),
				mapLookup(1, s[mapPorts6A]), dnat(unix.NFPROTO_IPV6, 2))
		}},
	}},
	{name: chainIntraBridge, rules: []ruleSpec{
		{"published ports stay reachable from siblings", func(map[string]*nftables.Set) []expr.Any {
			return cat(ctStatus(ctDNAT), verdict(expr.VerdictAccept, ""))
		}},
		{"icc=false", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setNoICC], false), verdict(expr.VerdictDrop, ""))
		}},
		{"same bridge", func(map[string]*nftables.Set) []expr.Any {
			return cat(verdict(expr.VerdictAccept, ""))
		}},
	}},
	{name: "prerouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPrerouting, prio: prioDstNAT, policy: &accept, rules: []ruleSpec{
		// Loopback destinations arriving from outside must never be translated:
		// Docker's DNAT of 127.0.0.1 ports let neighbours reach them via the host's MAC.
		{"no loopback from the wire", func(map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 16, 1, 1),
				cmpEq(1, []byte{127}), verdict(expr.VerdictReturn, ""))
		}},
		{"no loopback from the wire", func(map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 24, 16, 1),
				cmpEq(1, loopback6), verdict(expr.VerdictReturn, ""))
		}},
		{"to this host", func(map[string]*nftables.Set) []expr.Any {
			return cat(fibDaddrLocal(), verdict(expr.VerdictJump, chainPublished))
		}},
	}},
	{name: "output", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookOutput, prio: prioDstNAT, policy: &accept, rules: []ruleSpec{
		// A reply to ::1 cannot come back from a container (IPv6 drops
		// loopback addresses on real devices): ports on [::1] are served by
		// rewriting sockets (package loopback), and a DNAT here would only
		// turn "connection refused" into a hang.
		{"[::1] is not translated", func(map[string]*nftables.Set) []expr.Any {
			return cat(nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 24, 16, 1),
				cmpEq(1, loopback6), verdict(expr.VerdictReturn, ""))
		}},
		{"from this host", func(map[string]*nftables.Set) []expr.Any {
			return cat(fibDaddrLocal(), verdict(expr.VerdictJump, chainPublished))
		}},
	}},
	{name: "postrouting", typ: nftables.ChainTypeNAT, hook: nftables.ChainHookPostrouting, prio: prioSrcNAT, policy: &accept, rules: []ruleSpec{
		// A container reaching a published port of its own bridge via a host
		// address must get replies from the host, not straight from the sibling.
		// Matched by source subnet: with br_netfilter this packet is bridged
		// and postrouting sees no input interface.
		{"hairpin", func(s map[string]*nftables.Set) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 4, 1),
				meta(expr.MetaKeyOIFNAME, 9), lookup(1, s[setSubnets4], false), &expr.Masq{})
		}},
		{"hairpin", func(s map[string]*nftables.Set) []expr.Any {
			return cat(ctStatus(ctDNAT), nfproto(unix.NFPROTO_IPV6), payload(expr.PayloadBaseNetworkHeader, 8, 16, 1),
				meta(expr.MetaKeyOIFNAME, 2), lookup(1, s[setSubnets6], false), &expr.Masq{})
		}},
		// Ports published on 127.0.0.1 leave with a loopback source (needs
		// route_localnet on the bridge); the container could not answer it.
		{"from host loopback", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 12, 1, 1),
				cmpEq(1, []byte{127}), &expr.Masq{})
		}},
		{"to the outside", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setMasq], false),
				meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], true), &expr.Masq{})
		}},
	}},
	{name: "forward", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookForward, prio: prioFilter, policy: &accept, rules: []ruleSpec{
		{"replies", func(map[string]*nftables.Set) []expr.Any {
			return cat(ctState(ctEstRel), verdict(expr.VerdictAccept, ""))
		}},
		// iif == oif: routed hairpin, or bridged frames when br_netfilter is loaded.
		{"within one bridge", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), meta(expr.MetaKeyOIFNAME, 2),
				lookup(1, s[setPairs], false), verdict(expr.VerdictGoto, chainIntraBridge))
		}},
		{"internal network", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setInternal], false), verdict(expr.VerdictDrop, ""))
		}},
		{"internal network", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setInternal], false), verdict(expr.VerdictDrop, ""))
		}},
		{"published ports", func(map[string]*nftables.Set) []expr.Any {
			return cat(ctStatus(ctDNAT), verdict(expr.VerdictAccept, ""))
		}},
		{"network isolation", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				meta(expr.MetaKeyOIFNAME, 1), lookup(1, s[setBridges], false), verdict(expr.VerdictDrop, ""))
		}},
	}},
	{name: "input", typ: nftables.ChainTypeFilter, hook: nftables.ChainHookInput, prio: prioFilter, policy: &accept, rules: []ruleSpec{
		// route_localnet on a bridge would otherwise let containers reach the
		// host's 127.0.0.1 services (CVE-2020-8558).
		{"no host loopback from containers", func(s map[string]*nftables.Set) []expr.Any {
			return cat(meta(expr.MetaKeyIIFNAME, 1), lookup(1, s[setBridges], false),
				nfproto(unix.NFPROTO_IPV4), payload(expr.PayloadBaseNetworkHeader, 16, 1, 1),
				cmpEq(1, []byte{127}), ctState(ctNewInvalid), verdict(expr.VerdictDrop, ""))
		}},
	}},
}

func (c chainSpec) chain() *nftables.Chain {
	return &nftables.Chain{Name: c.name, Table: table, Type: c.typ, Hooknum: c.hook, Priority: c.prio, Policy: c.policy}
}

func comment(s string) []byte {
	return userdata.AppendString(nil, userdata.TypeComment, s)
}

// addLayout queues the whole table (without elements) on c and returns the
// sets so that elements can be queued in the same batch.
func addLayout(c *nftables.Conn) (map[string]*nftables.Set, error) {
	c.AddTable(table)
	sets := make(map[string]*nftables.Set, len(setSpecs))
	for _, s := range setSpecs {
		set := s.set()
		if err := c.AddSet(set, nil); err != nil {
			return nil, fmt.Errorf("set %s: %w", s.name, err)
		}
		sets[s.name] = set
	}
	chains := make([]*nftables.Chain, len(chainSpecs))
	for i, cs := range chainSpecs {
		chains[i] = c.AddChain(cs.chain())
	}
	for i, cs := range chainSpecs {
		for _, r := range cs.rules {
			c.AddRule(&nftables.Rule{Table: table, Chain: chains[i], Exprs: r.exprs(sets), UserData: comment(r.comment)})
		}
	}
	return sets, nil
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
func ctState(bits uint32) []expr.Any  { return ctBits(expr.CtKeySTATE, bits) }

func fibDaddrLocal() []expr.Any {
	return []expr.Any{&expr.Fib{Register: 1, ResultADDRTYPE: true, FlagDADDR: true}, cmpEq(1, rtnLocal)}
}

func verdict(k expr.VerdictKind, chain string) expr.Any { return &expr.Verdict{Kind: k, Chain: chain} }
