package firewall

import (
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Packet tests of what containers may send (issue 18): each attack is sent
// for real from a container's eth0, and a barrier (see testCPU) proves that
// it was dealt with before the test looks for its effect.

var (
	cidr4 = cidr("10.88.0.0/24")
	cidr6 = cidr("fd00:88::/64")
)

// rawICMP6 receives a copy of every ICMPv6 message of a namespace.
type rawICMP6 struct{ fd int }

func listenICMP6(t *testing.T, ns netns.NsHandle) *rawICMP6 {
	t.Helper()
	var fd int
	inNS(t, ns, func() {
		var err error
		fd, err = unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_ICMPV6)
		must(t, "raw ICMPv6 socket", err)
	})
	t.Cleanup(func() { unix.Close(fd) })
	return &rawICMP6{fd: fd}
}

type icmp6Msg struct {
	from net.IP
	typ  uint8
	body []byte // after type, code and checksum
}

// target is the address an NS, NA or redirect is about.
func (m icmp6Msg) target() net.IP {
	if len(m.body) < 20 {
		return nil
	}
	return net.IP(m.body[4:20])
}

// read returns the queued messages; with wait, it first waits up to 5 s for one.
func (r *rawICMP6) read(t *testing.T, wait bool) []icmp6Msg {
	t.Helper()
	if wait {
		fds := []unix.PollFd{{Fd: int32(r.fd), Events: unix.POLLIN}}
		if _, err := unix.Poll(fds, 5000); err != nil && !errors.Is(err, unix.EINTR) {
			t.Fatalf("poll: %v", err)
		}
	}
	var msgs []icmp6Msg
	buf := make([]byte, 2048)
	for {
		n, from, err := unix.Recvfrom(r.fd, buf, unix.MSG_DONTWAIT)
		if err != nil {
			return msgs
		}
		if n < 4 {
			continue
		}
		sa := from.(*unix.SockaddrInet6)
		msgs = append(msgs, icmp6Msg{from: net.IP(sa.Addr[:]).To16(), typ: buf[0], body: append([]byte{}, buf[4:n]...)})
	}
}

// waitFor reads messages until one satisfies ok, for at most 5 s.
func (r *rawICMP6) waitFor(t *testing.T, ok func(icmp6Msg) bool) bool {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); {
		if slices.ContainsFunc(r.read(t, true), ok) {
			return true
		}
	}
	return false
}

func has(msgs []icmp6Msg, typ uint8, from, target net.IP) bool {
	return slices.ContainsFunc(msgs, func(m icmp6Msg) bool {
		return m.typ == typ && (from == nil || m.from.Equal(from)) && (target == nil || m.target().Equal(target))
	})
}

// raEffects lists what router advertisements did to link in ns: routes
// learnt from them, addresses in prefix, an IPv6 MTU of 1280.
func raEffects(t *testing.T, ns netns.NsHandle, link string, prefix *net.IPNet) []string {
	t.Helper()
	h := handle(t, ns)
	l, err := h.LinkByName(link)
	must(t, "link "+link, err)
	var effects []string
	routes, err := h.RouteListFiltered(netlink.FAMILY_V6, &netlink.Route{LinkIndex: l.Attrs().Index}, netlink.RT_FILTER_OIF)
	must(t, "routes", err)
	for _, r := range routes {
		if r.Protocol == unix.RTPROT_RA {
			effects = append(effects, "route "+r.String())
		}
	}
	addrs, err := h.AddrList(l, netlink.FAMILY_V6)
	must(t, "addresses", err)
	for _, a := range addrs {
		if prefix.Contains(a.IP) {
			effects = append(effects, "address "+a.IPNet.String())
		}
	}
	if mtu := readSysctl(t, ns, "net/ipv6/conf/"+link+"/mtu"); mtu == "1280" {
		effects = append(effects, "MTU 1280")
	}
	return effects
}

// routerAdvertisement announces a default route through the sender, the
// prefix for SLAAC and MTU 1280, from the sender's link-local address.
func routerAdvertisement(t *testing.T, mac net.HardwareAddr, prefix *net.IPNet, tags int) []byte {
	t.Helper()
	pi := make([]byte, 30)
	pi[0] = 64
	pi[1] = 0xc0                                             // on-link, autonomous
	copy(pi[2:], []byte{0, 0, 0x1c, 0x20, 0, 0, 0x1c, 0x20}) // lifetimes 7200 s
	copy(pi[14:], prefix.IP.To16())
	ra := &layers.ICMPv6RouterAdvertisement{HopLimit: 64, RouterLifetime: 1800, Options: layers.ICMPv6Options{
		{Type: layers.ICMPv6OptSourceAddress, Data: mac},
		{Type: layers.ICMPv6OptMTU, Data: []byte{0, 0, 0, 0, 0x05, 0x00}},
		{Type: layers.ICMPv6OptPrefixInfo, Data: pi},
	}}
	ll := LinkLocal(mac)
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: ll, DstIP: net.ParseIP("ff02::1")}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeRouterAdvertisement, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	ls := []gopacket.SerializableLayer{ether(mac, allNodes, layers.EthernetTypeIPv6)}
	if tags > 0 {
		// VLAN 0 (priority tags): the kernel takes such frames as untagged.
		ls[0].(*layers.Ethernet).EthernetType = layers.EthernetTypeDot1Q
		for i := 0; i < tags; i++ {
			next := layers.EthernetTypeDot1Q
			if i == tags-1 {
				next = layers.EthernetTypeIPv6
			}
			ls = append(ls, &layers.Dot1Q{VLANIdentifier: 0, Type: next})
		}
	}
	ls = append(ls, ip, icmp, ra)
	return frame(t, ls...)
}

// Item 1: a container's router advertisement reaches neither the host nor a
// sibling, with or without anti-spoofing; nor does a redirect.
func TestRouterAdvertisements(t *testing.T) {
	tests := []struct {
		name          string
		firewall      bool
		allowSpoofing bool
	}{
		{"without ctnet's tables (the setup takes RAs)", false, false},
		{"guarded network", true, false},
		{"network allowing spoofing", true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// IPv6 forwarding off: the host takes RAs on its bridge, as a host
			// whose networks are all IPv4 does.
			l := newLab(t, labOpts{})
			n := Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr4, cidr6}, Masquerade: true, ICC: true, AllowSpoofing: tt.allowSpoofing}
			l.network(n, "02:00:00:00:00:01", "10.88.0.1/24", "fd00:88::1/64")
			a := l.container(n, "fwpa", "02:42:0a:58:00:02", "10.88.0.2/24", "fd00:88::2/64")
			s := l.container(n, "fwps", "02:42:0a:58:00:03", "10.88.0.3/24", "fd00:88::3/64")
			if tt.firewall {
				l.ensure()
			}
			listenTCP(t, s.ns, ":80", "s")
			listenTCP(t, l.host, "10.88.0.1:80", "host")
			hostICMP, sibICMP := listenICMP6(t, l.host), listenICMP6(t, s.ns)

			prefixes := []*net.IPNet{cidr("fd00:bad:0::/64"), cidr("fd00:bad:1::/64"), cidr("fd00:bad:2::/64")}
			for tags, p := range prefixes {
				a.send(t, routerAdvertisement(t, a.ep.MAC, p, tags))
			}
			// A redirect of s's traffic for the outside to a, "from" the gateway.
			redirect := &layers.ICMPv6Redirect{TargetAddress: LinkLocal(a.ep.MAC), DestinationAddress: net.ParseIP("fd00:113::1"),
				Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: a.ep.MAC}}}
			a.send(t, icmp6Frame(t, a.ep.MAC, s.ep.MAC, net.ParseIP("fd00:88::1"), s.ip6, layers.ICMPv6TypeRedirect, redirect))
			barrier(t, a.ns, "10.88.0.3:80")
			barrier(t, a.ns, "10.88.0.1:80")

			hostMsgs, sibMsgs := hostICMP.read(t, false), sibICMP.read(t, false)
			ll := LinkLocal(a.ep.MAC)
			for _, p := range prefixes {
				for _, where := range []struct {
					name string
					ns   netns.NsHandle
					link string
				}{{"host", l.host, "ctnet0"}, {"sibling", s.ns, "eth0"}} {
					got := raEffects(t, where.ns, where.link, p)
					if tt.firewall && len(got) > 0 {
						t.Errorf("RA for %s changed the %s: %q", p, where.name, got)
					}
					// Each RA, tagged or not, must be a real attack: each gives an address.
					if !tt.firewall && !slices.ContainsFunc(got, func(e string) bool { return strings.HasPrefix(e, "address") }) {
						t.Errorf("without firewall, RA for %s did %q to the %s; want an address", p, got, where.name)
					}
					if !tt.firewall && p == prefixes[0] && len(got) != 3 {
						t.Errorf("without firewall, RA for %s did %q to the %s; want a route, an address and the MTU", p, got, where.name)
					}
				}
			}
			for _, got := range []struct {
				name string
				msgs []icmp6Msg
				typ  uint8
			}{{"host", hostMsgs, icmp6RouterAdv}, {"sibling", sibMsgs, icmp6RouterAdv}, {"sibling", sibMsgs, icmp6Redirect}} {
				if seen := has(got.msgs, got.typ, nil, nil); seen == tt.firewall {
					t.Errorf("the %s received ICMPv6 type %d from a: %v, want %v", got.name, got.typ, seen, !tt.firewall)
				}
			}
			if !tt.firewall && !has(sibMsgs, icmp6RouterAdv, ll, nil) {
				t.Errorf("RA source is not a's link-local %s", ll)
			}
		})
	}
}

// Item 2: a neighbour routing container subnets via the host reaches
// published ports only (and what containers opened), unless the network
// opts out with RoutedIngress.
func TestIngressFromOutside(t *testing.T) {
	l := newLab(t, labOpts{ipv6Forwarding: true})
	type netCase struct {
		name string
		n    Network
		open bool
		c    *container
		udp  *net.UDPConn
		port int // published host port
	}
	cases := []*netCase{
		{name: "masquerade", n: Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr4, cidr6}, Masquerade: true, ICC: true}},
		{name: "routed", n: Network{Bridge: "ctnet1", Subnets: []*net.IPNet{cidr("10.89.0.0/24"), cidr("fd00:89::/64")}, ICC: true}},
		{name: "routed with open ingress", open: true,
			n: Network{Bridge: "ctnet2", Subnets: []*net.IPNet{cidr("10.90.0.0/24"), cidr("fd00:90::/64")}, ICC: true, RoutedIngress: true}},
	}
	for i, nc := range cases {
		b := 88 + i
		l.network(nc.n, fmt.Sprintf("02:00:00:00:%02x:01", b), fmt.Sprintf("10.%d.0.1/24", b), fmt.Sprintf("fd00:%d::1/64", b))
		nc.c = l.container(nc.n, fmt.Sprintf("fwp%d", b), fmt.Sprintf("02:42:0a:%02x:00:02", b),
			fmt.Sprintf("10.%d.0.2/24", b), fmt.Sprintf("fd00:%d::2/64", b))
		nc.port = 8080 + i
		for _, ip := range []net.IP{nc.c.ip4, nc.c.ip6} {
			l.ports = append(l.ports, Port{Proto: "tcp", HostPort: uint16(nc.port), ContainerIP: ip, ContainerPort: 80, Bridge: nc.n.Bridge})
		}
		listenTCP(t, nc.c.ns, ":80", nc.name)
		listenTCP(t, nc.c.ns, ":22", nc.name+" ssh")
		nc.udp = listenUDP(t, nc.c.ns, ":53")
	}
	l.ensure()
	listenTCP(t, l.out, ":7777", "outside")
	echoUDP(listenUDP(t, l.out, ":7778"))

	hosts := map[int]net.IP{4: net.ParseIP("203.0.113.2"), 6: net.ParseIP("fd00:113::2")}
	outs := map[int]net.IP{4: net.ParseIP("203.0.113.1"), 6: net.ParseIP("fd00:113::1")}
	for _, nc := range cases {
		for _, v := range []int{4, 6} {
			ip := map[int]net.IP{4: nc.c.ip4, 6: nc.c.ip6}[v]
			published := hostPort(hosts[v], nc.port)
			t.Run(fmt.Sprintf("%s/IPv%d", nc.name, v), func(t *testing.T) {
				fd := halfOpen(t, l.out, &net.TCPAddr{IP: ip, Port: 22})
				probe := fmt.Sprintf("probe %s %d", nc.name, v)
				sendUDP(t, l.out, "", hostPort(ip, 53), probe)
				// The barrier is the published port, on the same path.
				if got, err := dial(t, l.out, published); err != nil || got != nc.name {
					t.Fatalf("published port %s: %q, %v; want %q", published, got, err, nc.name)
				}
				if got := tcpAnswered(t, fd); got != nc.open {
					t.Errorf("unpublished TCP port %s reached from outside: %v, want %v", hostPort(ip, 22), got, nc.open)
				}
				if got := slices.Contains(queued(t, nc.udp), probe); got != nc.open {
					t.Errorf("unpublished UDP port %s reached from outside: %v, want %v", hostPort(ip, 53), got, nc.open)
				}
				// Replies to the container's own connections come back in.
				if got, err := dial(t, nc.c.ns, hostPort(outs[v], 7777)); err != nil || got != "outside" {
					t.Errorf("container to the outside: %q, %v", got, err)
				}
				c := sendUDP(t, nc.c.ns, "", hostPort(outs[v], 7778), "ping")
				if got, _, err := recvUDP(t, c); err != nil || got != "echo ping" {
					t.Errorf("UDP reply from the outside: %q, %v", got, err)
				}
			})
		}
	}
}

// Item 3: a container on network A cannot inject packets into a flow of a
// container on network B, though it may use B's published ports.
func TestCrossNetworkInjection(t *testing.T) {
	l := newLab(t, labOpts{})
	// A allows spoofing, so that only the inet table stands in the way.
	na := Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr4}, Masquerade: true, ICC: true, AllowSpoofing: true}
	nb := Network{Bridge: "ctnet1", Subnets: []*net.IPNet{cidr("10.89.0.0/24")}, Masquerade: true, ICC: true}
	l.network(na, "02:00:00:00:00:01", "10.88.0.1/24")
	l.network(nb, "02:00:00:00:01:01", "10.89.0.1/24")
	a := l.container(na, "fwpa", "02:42:0a:58:00:02", "10.88.0.2/24")
	b := l.container(nb, "fwpb", "02:42:0a:59:00:02", "10.89.0.2/24")
	l.ports = []Port{
		{Proto: "tcp", HostPort: 9090, ContainerIP: b.ip4, ContainerPort: 90},
		{Proto: "udp", HostPort: 5353, ContainerIP: b.ip4, ContainerPort: 53},
	}
	l.ensure()
	listenTCP(t, b.ns, ":90", "b")

	// b's own flow to the outside (masqueraded), and the outside's flow to b's published UDP port.
	outUDP := listenUDP(t, l.out, "203.0.113.1:7777")
	bFlow := sendUDP(t, b.ns, "10.89.0.2:5000", "203.0.113.1:7777", "hello")
	_, masq, err := recvUDP(t, outUDP)
	must(t, "b's datagram at the outside", err)
	_, err = outUDP.WriteToUDP([]byte("legit"), masq)
	must(t, "reply to b", err)
	if got, _, err := recvUDP(t, bFlow); err != nil || got != "legit" {
		t.Fatalf("reply to b: %q, %v", got, err)
	}
	bDNS := listenUDP(t, b.ns, ":53")
	sendUDP(t, l.out, "203.0.113.1:7000", "203.0.113.2:5353", "query")
	if got, _, err := recvUDP(t, bDNS); err != nil || got != "query" {
		t.Fatalf("published UDP port of b: %q, %v", got, err)
	}

	a.send(t, udpFrame(t, a.ep.MAC, a.gwMAC, "203.0.113.1:7777", masq.String(), "forged reply"))
	a.send(t, udpFrame(t, a.ep.MAC, a.gwMAC, "203.0.113.1:7000", "203.0.113.2:5353", "forged query"))
	direct := halfOpen(t, a.ns, &net.TCPAddr{IP: b.ip4, Port: 90})
	// A container may use another network's published port (and this is the barrier).
	if got, err := dial(t, a.ns, "203.0.113.2:9090"); err != nil || got != "b" {
		t.Fatalf("a to b's published port: %q, %v", got, err)
	}
	if got := queued(t, bFlow); len(got) > 0 {
		t.Errorf("b's flow to the outside got %q from a", got)
	}
	if got := queued(t, bDNS); len(got) > 0 {
		t.Errorf("the outside's flow to b's published port got %q from a", got)
	}
	if tcpAnswered(t, direct) {
		t.Errorf("a reached b at %s directly", b.ip4)
	}
}

// Item 4: nothing from a container carries a loopback address, but ports
// published on 127.0.0.1 keep working, replies included.
func TestHostLoopbackInjection(t *testing.T) {
	tests := []struct {
		name    string
		deleted string // the table deleted to test the other alone
	}{
		{"both tables", ""},
		{"inet table alone", "bridge"},
		{"bridge table alone", "inet"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			l := newLab(t, labOpts{})
			n := Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr4}, Masquerade: true, ICC: true, AllowSpoofing: tt.deleted == "bridge"}
			l.network(n, "02:00:00:00:00:01", "10.88.0.1/24")
			a := l.container(n, "fwpa", "02:42:0a:58:00:02", "10.88.0.2/24")
			lo := net.ParseIP("127.0.0.1")
			l.ports = []Port{
				{Proto: "tcp", HostIP: lo, HostPort: 8081, ContainerIP: a.ip4, ContainerPort: 80},
				{Proto: "udp", HostIP: lo, HostPort: 8053, ContainerIP: a.ip4, ContainerPort: 53},
			}
			l.ensure()
			if tt.deleted != "" {
				l.deleteTable(tt.deleted)
			}
			listenTCP(t, a.ns, ":80", "a")
			echoUDP(listenUDP(t, a.ns, ":53"))
			listenTCP(t, l.host, "10.88.0.1:80", "host")

			// A host client of a resolver on 127.0.0.53, as systemd-resolved's.
			resolver := listenUDP(t, l.host, "127.0.0.53:53")
			client := sendUDP(t, l.host, "0.0.0.0:5300", "127.0.0.53:53", "query")
			if got, _, err := recvUDP(t, resolver); err != nil || got != "query" {
				t.Fatalf("resolver: %q, %v", got, err)
			}
			a.send(t, udpFrame(t, a.ep.MAC, a.gwMAC, "127.0.0.53:53", "127.0.0.1:5300", "forged reply"))
			a.send(t, udpFrame(t, a.ep.MAC, a.gwMAC, "127.0.0.1:5300", "127.0.0.53:53", "forged query"))
			a.send(t, udpFrame(t, a.ep.MAC, a.gwMAC, "10.88.0.2:4000", "127.0.0.53:53", "new query"))
			barrier(t, a.ns, "10.88.0.1:80")
			if got := queued(t, client); len(got) > 0 {
				t.Errorf("host client on 127.0.0.1 got %q from a container", got)
			}
			if got := queued(t, resolver); len(got) > 0 {
				t.Errorf("resolver on 127.0.0.53 got %q from a container", got)
			}

			if tt.deleted == "inet" {
				return // no DNAT without it
			}
			if got, err := dial(t, l.host, "127.0.0.1:8081"); err != nil || got != "a" {
				t.Errorf("TCP port published on 127.0.0.1: %q, %v", got, err)
			}
			c := sendUDP(t, l.host, "", "127.0.0.1:8053", "ping")
			if got, _, err := recvUDP(t, c); err != nil || got != "echo ping" {
				t.Errorf("UDP port published on 127.0.0.1: %q, %v", got, err)
			}
		})
	}
}

// Item 5: a container cannot claim a sibling's MAC or addresses (ARP, ND,
// source addresses) unless its network allows spoofing, and legitimate
// traffic (ARP, ND, DAD, link-local, DHCP) still flows.
func TestSpoofing(t *testing.T) {
	tests := []struct {
		name          string
		allowSpoofing bool
		brNetfilter   bool
	}{
		{"guarded", false, false},
		{"guarded with br_netfilter", false, true},
		{"spoofing allowed", true, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			testSpoofing(t, tt.allowSpoofing, tt.brNetfilter)
		})
	}
}

func testSpoofing(t *testing.T, allowSpoofing, brNetfilter bool) {
	l := newLab(t, labOpts{ipv6Forwarding: true, brNetfilter: brNetfilter})
	n := Network{Bridge: "ctnet0", Subnets: []*net.IPNet{cidr4, cidr6}, Masquerade: true, ICC: true, AllowSpoofing: allowSpoofing}
	l.network(n, "02:00:00:00:00:01", "10.88.0.1/24", "fd00:88::1/64")
	a := l.container(n, "fwpa", "02:42:0a:58:00:02", "10.88.0.2/24", "fd00:88::2/64")
	v := l.container(n, "fwpv", "02:42:0a:58:00:03", "10.88.0.3/24", "fd00:88::3/64")
	s := l.container(n, "fwps", "02:42:0a:58:00:04", "10.88.0.4/24", "fd00:88::4/64")
	dadAddr := net.ParseIP("fd00:88::33") // v's, configured later with DAD
	v.ep.IPs = append(v.ep.IPs, dadAddr)
	l.eps[1] = v.ep
	l.ports = []Port{{Proto: "tcp", HostPort: 8080, ContainerIP: v.ip4, ContainerPort: 80}}
	l.ensure()
	for _, c := range []*container{a, v, s} {
		listenTCP(t, c.ns, ":80", c.name)
	}
	listenTCP(t, l.host, ":80", "host")
	sysctl(t, l.host, "net/ipv4/neigh/ctnet0/locktime", "0") // any ARP reply may override
	hostUDP, sibUDP := listenUDP(t, l.host, ":9999"), listenUDP(t, s.ns, ":9999")
	hostICMP := listenICMP6(t, l.host)
	dhcp := listenUDP(t, l.host, "0.0.0.0:67")

	br, err := l.h.LinkByName("ctnet0")
	must(t, "bridge", err)
	zoned := func(ip net.IP, index int) string { return fmt.Sprintf("[%s%%%d]:80", ip, index) }
	// forget drops the host's neighbour entry for ip after an attack that may have poisoned it.
	forget := func(ip net.IP) {
		family := netlink.FAMILY_V4
		if ip.To4() == nil {
			family = netlink.FAMILY_V6
		}
		l.h.NeighDel(&netlink.Neigh{LinkIndex: br.Attrs().Index, Family: family, IP: ip})
	}

	t.Run("legitimate traffic", func(t *testing.T) {
		for _, tc := range []struct {
			from netns.NsHandle
			addr string
			want string
		}{
			{l.host, "10.88.0.3:80", "fwpv"},                               // ARP
			{l.host, "10.88.0.2:80", "fwpa"},                               // ARP
			{a.ns, "10.88.0.4:80", "fwps"},                                 // ARP between siblings
			{l.host, "[fd00:88::3]:80", "fwpv"},                            // ND
			{s.ns, "[fd00:88::3]:80", "fwpv"},                              // ND between siblings
			{l.host, zoned(LinkLocal(v.ep.MAC), br.Attrs().Index), "fwpv"}, // link-local
			{s.ns, zoned(LinkLocal(v.ep.MAC), s.ifindex), "fwpv"},          // link-local between siblings
			{l.out, "203.0.113.2:8080", "fwpv"},                            // published port
			{v.ns, "10.88.0.1:80", "host"},                                 // to the host
			{v.ns, zoned(LinkLocal(l.macs["ctnet0"]), v.ifindex), "host"},  // to the host's link-local
		} {
			if got, err := dial(t, tc.from, tc.addr); err != nil || got != tc.want {
				t.Errorf("dial %s: %q, %v; want %q", tc.addr, got, err, tc.want)
			}
		}
		// DHCP before an address: from 0.0.0.0 to a server.
		a.send(t, udpFrame(t, a.ep.MAC, broadcast, "0.0.0.0:68", "255.255.255.255:67", "discover"))
		if got, _, err := recvUDP(t, dhcp); err != nil || got != "discover" {
			t.Errorf("DHCP discover: %q, %v", got, err)
		}
		// Duplicate address detection of a new address of v's own.
		for k, val := range map[string]string{"net/ipv6/conf/eth0/accept_dad": "1", "net/ipv6/conf/eth0/router_solicitation_delay": "0",
			"net/ipv6/neigh/eth0/retrans_time_ms": "100"} {
			sysctl(t, v.ns, k, val)
		}
		eth0, err := v.h.LinkByIndex(v.ifindex)
		must(t, "v's eth0", err)
		// The host sees the probe only as a member of the address's solicited-node group.
		group, _ := solicitedNode(dadAddr)
		inNS(t, l.host, func() {
			ifi, err := net.InterfaceByIndex(br.Attrs().Index)
			must(t, "bridge interface", err)
			c, err := net.ListenMulticastUDP("udp6", ifi, &net.UDPAddr{IP: group, Port: 9})
			must(t, "join "+group.String(), err)
			t.Cleanup(func() { c.Close() })
		})
		must(t, "DAD address", v.h.AddrAdd(eth0, &netlink.Addr{IPNet: &net.IPNet{IP: dadAddr, Mask: cidr6.Mask}}))
		if !hostICMP.waitFor(t, func(m icmp6Msg) bool { return has([]icmp6Msg{m}, icmp6NeighSol, net.IPv6unspecified, dadAddr) }) {
			t.Errorf("v's DAD probe for %s did not reach the host", dadAddr)
		}
		deadline := time.Now().Add(5 * time.Second)
		for {
			addrs, err := v.h.AddrList(eth0, netlink.FAMILY_V6)
			must(t, "addresses", err)
			i := slices.IndexFunc(addrs, func(a netlink.Addr) bool { return a.IP.Equal(dadAddr) })
			if i >= 0 && addrs[i].Flags&(unix.IFA_F_TENTATIVE|unix.IFA_F_DADFAILED) == 0 {
				break
			}
			if i < 0 || addrs[i].Flags&unix.IFA_F_DADFAILED != 0 || time.Now().After(deadline) {
				t.Fatalf("DAD of %s: %+v", dadAddr, addrs)
			}
			time.Sleep(20 * time.Millisecond)
		}
		if got, err := dial(t, l.host, "[fd00:88::33]:80"); err != nil || got != "fwpv" {
			t.Errorf("v's new address: %q, %v", got, err)
		}
	})

	// Every attack must work when spoofing is allowed: that proves it is a
	// real one that the guard stops.
	blocked := !allowSpoofing
	t.Run("ARP reply for a sibling's address", func(t *testing.T) {
		if got := l.neighbour(v.ip4); got.String() != v.ep.MAC.String() {
			t.Fatalf("host's neighbour %s is %s before the attack", v.ip4, got)
		}
		a.send(t, arpFrame(t, a.ep.MAC, broadcast, 2, a.ep.MAC, v.ip4, v.ip4))
		barrier(t, a.ns, "10.88.0.1:80")
		if got := l.neighbour(v.ip4); (got.String() == v.ep.MAC.String()) != blocked {
			t.Errorf("host's neighbour %s is %s after a's gratuitous ARP", v.ip4, got)
		}
		if blocked {
			if got, err := dial(t, l.out, "203.0.113.2:8080"); err != nil || got != "fwpv" {
				t.Errorf("v's published port answered %q, %v", got, err)
			}
		}
		forget(v.ip4)
	})
	t.Run("ARP with another sender MAC", func(t *testing.T) {
		a.send(t, arpFrame(t, a.ep.MAC, broadcast, 2, s.ep.MAC, a.ip4, a.ip4))
		// Not via the host, which may now answer a at s's MAC: the bridge
		// hands the ARP to the host before it forwards what follows.
		barrier(t, a.ns, "10.88.0.4:80")
		if got := l.neighbour(a.ip4); (got.String() == a.ep.MAC.String()) != blocked {
			t.Errorf("host's neighbour %s is %s after a's ARP naming s's MAC", a.ip4, got)
		}
		forget(a.ip4)
	})
	t.Run("neighbour advertisement for a sibling's address", func(t *testing.T) {
		if got := l.neighbour(v.ip6); got.String() != v.ep.MAC.String() {
			t.Fatalf("host's neighbour %s is %s before the attack", v.ip6, got)
		}
		na := &layers.ICMPv6NeighborAdvertisement{Flags: 0x20, TargetAddress: v.ip6, // override
			Options: layers.ICMPv6Options{{Type: layers.ICMPv6OptTargetAddress, Data: a.ep.MAC}}}
		a.send(t, icmp6Frame(t, a.ep.MAC, allNodes, a.ip6, net.ParseIP("ff02::1"), layers.ICMPv6TypeNeighborAdvertisement, na))
		barrier(t, a.ns, "[fd00:88::1]:80")
		if got := l.neighbour(v.ip6); (got.String() == v.ep.MAC.String()) != blocked {
			t.Errorf("host's neighbour %s is %s after a's advertisement", v.ip6, got)
		}
		forget(v.ip6)
	})
	vICMP := listenICMP6(t, v.ns)
	t.Run("DAD probe for a sibling's address", func(t *testing.T) {
		dst, mac := solicitedNode(v.ip6)
		ns := &layers.ICMPv6NeighborSolicitation{TargetAddress: v.ip6}
		a.send(t, icmp6Frame(t, a.ep.MAC, mac, net.IPv6unspecified, dst, layers.ICMPv6TypeNeighborSolicitation, ns))
		barrier(t, a.ns, "10.88.0.3:80")
		if got := has(vICMP.read(t, false), icmp6NeighSol, net.IPv6unspecified, v.ip6); got == blocked {
			t.Errorf("a's DAD probe for %s reached v: %v", v.ip6, got)
		}
	})
	for _, tc := range []struct {
		name     string
		src      net.HardwareAddr
		dst      net.HardwareAddr
		from, to string
		sibling  bool
	}{
		{"IPv4 source of a sibling to the host", a.ep.MAC, l.macs["ctnet0"], "10.88.0.3:1234", "10.88.0.1:9999", false},
		{"IPv4 source of a sibling to a sibling", a.ep.MAC, s.ep.MAC, "10.88.0.3:1234", "10.88.0.4:9999", true},
		{"IPv4 source off the subnet", a.ep.MAC, l.macs["ctnet0"], "203.0.113.1:1234", "10.88.0.1:9999", false},
		{"IPv6 source of a sibling to the host", a.ep.MAC, l.macs["ctnet0"], "[fd00:88::3]:1234", "[fd00:88::1]:9999", false},
		{"IPv6 source of a sibling to a sibling", a.ep.MAC, s.ep.MAC, "[fd00:88::3]:1234", "[fd00:88::4]:9999", true},
		{"link-local source not its own", a.ep.MAC, l.macs["ctnet0"], "[fe80::1234]:1234", "[fd00:88::1]:9999", false},
		{"Ethernet source of a sibling", v.ep.MAC, l.macs["ctnet0"], "10.88.0.2:1234", "10.88.0.1:9999", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			payload := "spoofed: " + tc.name
			a.send(t, udpFrame(t, tc.src, tc.dst, tc.from, tc.to, payload))
			sock, via := hostUDP, "10.88.0.1:80"
			if strings.HasPrefix(tc.to, "[") {
				via = "[fd00:88::1]:80"
			}
			if tc.sibling {
				sock, via = sibUDP, strings.Replace(tc.to, ":9999", ":80", 1)
			}
			barrier(t, a.ns, via)
			if got := slices.Contains(queued(t, sock), payload); got == blocked {
				t.Errorf("%q arrived: %v", payload, got)
			}
		})
	}
	if !blocked {
		return
	}
	// The ARP attack above could have taught the bridge v's MAC on a's port;
	// v must still be reachable by its own.
	if got, err := dial(t, l.host, "10.88.0.3:80"); err != nil || got != "fwpv" {
		t.Errorf("v after the attacks: %q, %v", got, err)
	}
}
