package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A lab is a sandbox host H with an upstream O and bridges with containers:
//
//	C eth0 ── port [bridge] H [fwup0 203.0.113.2, fd00:113::2] ── eth0 203.0.113.1, fd00:113::1 O
//
// O routes every container subnet via H, as a neighbour on the LAN would.
type lab struct {
	t     *testing.T
	sb    *sandbox
	host  netns.NsHandle
	h     *netlink.Handle
	out   netns.NsHandle
	ho    *netlink.Handle
	fw    *Firewall
	nets  []Network
	eps   []Endpoint
	ports []Port
	gws   map[string][]net.IP // bridge: gateway addresses
	macs  map[string]net.HardwareAddr
}

type labOpts struct {
	ipv6Forwarding bool // off, the host takes router advertisements on its bridges
	brNetfilter    bool
}

func newLab(t *testing.T, o labOpts) *lab {
	t.Helper()
	sb := newSandbox(t)
	l := &lab{t: t, sb: sb, host: sb.ns, h: handle(t, sb.ns), out: extraNS(t),
		gws: map[string][]net.IP{}, macs: map[string]net.HardwareAddr{}}
	l.ho = handle(t, l.out)
	for _, ns := range []netns.NsHandle{l.host, l.out} {
		noDAD(t, ns)
	}
	sysctl(t, l.host, "net/ipv4/ip_forward", "1")
	for _, c := range []string{"all", "default"} {
		// What the machine's namespace has must not decide whether an attack is real.
		sysctl(t, l.host, "net/ipv4/conf/"+c+"/rp_filter", "0")
	}
	sysctl(t, l.host, "net/ipv6/conf/all/forwarding", map[bool]string{true: "1", false: "0"}[o.ipv6Forwarding])
	const brnf = "net/bridge/bridge-nf-call-iptables"
	if _, err := os.Stat("/proc/sys/" + brnf); err != nil {
		if o.brNetfilter {
			t.Skip("br_netfilter not loaded")
		}
	} else {
		for _, f := range []string{brnf, "net/bridge/bridge-nf-call-ip6tables"} {
			sysctl(t, l.host, f, map[bool]string{true: "1", false: "0"}[o.brNetfilter])
		}
	}
	must(t, "veth to outside", l.h.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: "fwup0"},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(l.out)}))
	linkUp(t, l.h, "fwup0", "203.0.113.2/24")
	addAddr(t, l.h, "fwup0", "fd00:113::2/64")
	linkUp(t, l.h, "lo", "")
	linkUp(t, l.ho, "eth0", "203.0.113.1/24")
	addAddr(t, l.ho, "eth0", "fd00:113::1/64")
	linkUp(t, l.ho, "lo", "")
	l.fw = sb.firewall(t)
	return l
}

// noDAD makes addresses of links created in ns usable at once.
func noDAD(t *testing.T, ns netns.NsHandle) {
	t.Helper()
	for _, c := range []string{"all", "default"} {
		sysctl(t, ns, "net/ipv6/conf/"+c+"/accept_dad", "0")
	}
}

// sysctl writes /proc/sys/path inside ns.
func sysctl(t *testing.T, ns netns.NsHandle, path, value string) {
	t.Helper()
	inNS(t, ns, func() {
		must(t, "sysctl "+path, os.WriteFile(filepath.Join("/proc/sys", path), []byte(value), 0o644))
	})
}

func readSysctl(t *testing.T, ns netns.NsHandle, path string) string {
	t.Helper()
	var b []byte
	inNS(t, ns, func() {
		var err error
		b, err = os.ReadFile(filepath.Join("/proc/sys", path))
		must(t, "read sysctl "+path, err)
	})
	return strings.TrimSpace(string(b))
}

func addAddr(t *testing.T, h *netlink.Handle, link, addr string) {
	t.Helper()
	l, err := h.LinkByName(link)
	must(t, "link "+link, err)
	a, err := netlink.ParseAddr(addr)
	must(t, "parse "+addr, err)
	if a.IP.To4() == nil {
		a.Flags = unix.IFA_F_NODAD
	}
	must(t, "addr "+addr+" on "+link, h.AddrAdd(l, a))
}

// network makes n's bridge with gateway addresses (address/prefix) and
// route_localnet, as the bridge driver does, and routes n's subnets from O.
func (l *lab) network(n Network, mac string, gateways ...string) {
	t := l.t
	t.Helper()
	hw, err := net.ParseMAC(mac)
	must(t, "parse MAC", err)
	must(t, "bridge "+n.Bridge, l.h.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: n.Bridge, HardwareAddr: hw}}))
	linkUp(t, l.h, n.Bridge, "")
	for _, gw := range gateways {
		addAddr(t, l.h, n.Bridge, gw)
		ip, _, _ := net.ParseCIDR(gw)
		l.gws[n.Bridge] = append(l.gws[n.Bridge], ip)
	}
	sysctl(t, l.host, "net/ipv4/conf/"+n.Bridge+"/route_localnet", "1")
	up, err := l.ho.LinkByName("eth0")
	must(t, "upstream eth0", err)
	for _, sn := range n.Subnets {
		via := net.ParseIP("203.0.113.2")
		if sn.IP.To4() == nil {
			via = net.ParseIP("fd00:113::2")
		}
		must(t, "route to "+sn.String(), l.ho.RouteAdd(&netlink.Route{LinkIndex: up.Attrs().Index, Dst: sn, Gw: via}))
	}
	l.nets = append(l.nets, n)
	l.macs[n.Bridge] = hw
}

type container struct {
	name    string
	ns      netns.NsHandle
	h       *netlink.Handle
	ep      Endpoint
	ip4     net.IP
	ip6     net.IP
	gwMAC   net.HardwareAddr // its bridge's
	ifindex int              // of eth0
}

// container joins a new namespace to n's bridge through port, with eth0's
// MAC and addresses (address/prefix) and default routes via the gateways.
func (l *lab) container(n Network, port, mac string, addrs ...string) *container {
	t := l.t
	t.Helper()
	hw, err := net.ParseMAC(mac)
	must(t, "parse MAC", err)
	c := &container{name: port, ns: extraNS(t), gwMAC: l.macs[n.Bridge]}
	c.h = handle(t, c.ns)
	noDAD(t, c.ns)
	br, err := l.h.LinkByName(n.Bridge)
	must(t, "bridge", err)
	must(t, "veth "+port, l.h.LinkAdd(&netlink.Veth{
		LinkAttrs: netlink.LinkAttrs{Name: port, MasterIndex: br.Attrs().Index},
		PeerName:  "eth0", PeerNamespace: netlink.NsFd(c.ns), PeerHardwareAddr: hw}))
	linkUp(t, l.h, port, "")
	eth0 := linkUp(t, c.h, "eth0", "")
	linkUp(t, c.h, "lo", "")
	c.ifindex = eth0.Attrs().Index
	c.ep = Endpoint{Port: port, Bridge: n.Bridge, MAC: hw}
	for _, a := range addrs {
		addAddr(t, c.h, "eth0", a)
		ip, _, _ := net.ParseCIDR(a)
		c.ep.IPs = append(c.ep.IPs, ip)
		if ip.To4() != nil {
			c.ip4 = ip
		} else {
			c.ip6 = ip
		}
	}
	for _, gw := range l.gws[n.Bridge] {
		must(t, "default route via "+gw.String(), c.h.RouteAdd(&netlink.Route{LinkIndex: c.ifindex, Gw: gw}))
	}
	l.eps = append(l.eps, c.ep)
	l.waitReady(c, port, n.Bridge)
	return c
}

// waitReady waits until the kernel has taken the link changes in: carrier
// reaches the bridge and addrconf asynchronously (linkwatch), and until
// then the bridge drops the port's frames and IPv6 is not up — a test
// could send an attack into the void and pass.
func (l *lab) waitReady(c *container, port, bridge string) {
	t := l.t
	t.Helper()
	p, err := l.h.LinkByName(port)
	must(t, "port "+port, err)
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		ready := portForwarding(t, l.host, p.Attrs().Index) &&
			linkLocalReady(t, l.h, bridge) && linkLocalReady(t, c.h, "eth0")
		if ready {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("port %s of %s not forwarding with IPv6 up after 5 s", port, bridge)
		}
	}
}

// portForwarding reports whether the bridge port index in ns is in state forwarding.
func portForwarding(t *testing.T, ns netns.NsHandle, index int) bool {
	t.Helper()
	const brStateForwarding = 3
	state := -1
	inNS(t, ns, func() {
		req := nl.NewNetlinkRequest(unix.RTM_GETLINK, unix.NLM_F_DUMP)
		req.AddData(nl.NewIfInfomsg(unix.AF_BRIDGE))
		msgs, err := req.Execute(unix.NETLINK_ROUTE, 0)
		must(t, "dump bridge ports", err)
		for _, m := range msgs {
			if int(nl.DeserializeIfInfomsg(m).Index) != index {
				continue
			}
			attrs, err := nl.ParseRouteAttr(m[unix.SizeofIfInfomsg:])
			must(t, "parse bridge port", err)
			for _, a := range attrs {
				if a.Attr.Type&^unix.NLA_F_NESTED != unix.IFLA_PROTINFO {
					continue
				}
				infos, err := nl.ParseRouteAttr(a.Value)
				must(t, "parse protinfo", err)
				for _, i := range infos {
					if i.Attr.Type == nl.IFLA_BRPORT_STATE && len(i.Value) > 0 {
						state = int(i.Value[0])
					}
				}
			}
		}
	})
	return state == brStateForwarding
}

// linkLocalReady reports whether link has a usable IPv6 link-local address
// (or IPv6 off).
func linkLocalReady(t *testing.T, h *netlink.Handle, link string) bool {
	t.Helper()
	l, err := h.LinkByName(link)
	must(t, "link "+link, err)
	addrs, err := h.AddrList(l, netlink.FAMILY_V6)
	must(t, "addresses of "+link, err)
	for _, a := range addrs {
		if a.IP.IsLinkLocalUnicast() && a.Flags&unix.IFA_F_TENTATIVE == 0 {
			return true
		}
	}
	return false
}

func (l *lab) ensure() {
	l.t.Helper()
	if _, err := l.fw.Ensure(l.nets, l.eps, l.ports); err != nil {
		l.t.Fatal(err)
	}
}

// deleteTable leaves only the other table of ctnet's, to test one alone.
func (l *lab) deleteTable(family string) {
	l.t.Helper()
	l.sb.nft(l.t, "delete", "table", family, TableName)
}

func hostPort(ip net.IP, port int) string { return net.JoinHostPort(ip.String(), fmt.Sprint(port)) }

// listenTCP listens on addr inside ns and answers each connection with name.
func listenTCP(t *testing.T, ns netns.NsHandle, addr, name string) {
	t.Helper()
	var l net.Listener
	inNS(t, ns, func() {
		var err error
		l, err = net.Listen("tcp", addr)
		must(t, "listen "+addr, err)
	})
	t.Cleanup(func() { l.Close() })
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(name + "\n"))
			c.Close()
		}
	}()
}

// listenUDP opens a UDP socket on addr inside ns; tests read it with queued.
func listenUDP(t *testing.T, ns netns.NsHandle, addr string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNS(t, ns, func() {
		a, err := net.ResolveUDPAddr("udp", addr)
		must(t, "resolve "+addr, err)
		c, err = net.ListenUDP("udp", a)
		must(t, "listen udp "+addr, err)
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// echoUDP answers each datagram on c with "echo " + its payload.
func echoUDP(c *net.UDPConn) {
	go func() {
		buf := make([]byte, 2048)
		for {
			n, from, err := c.ReadFromUDP(buf)
			if err != nil {
				return
			}
			c.WriteToUDP(append([]byte("echo "), buf[:n]...), from)
		}
	}()
}

// dial connects from ns to addr and returns what the server said first.
func dial(t *testing.T, ns netns.NsHandle, addr string) (string, error) {
	t.Helper()
	var reply string
	var err error
	inNS(t, ns, func() {
		var c net.Conn
		// The timeout only keeps a broken setup from hanging the test.
		c, err = net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 128)
		var n int
		n, err = c.Read(buf)
		reply = strings.TrimSpace(string(buf[:n]))
	})
	return reply, err
}

// barrier connects from ns to addr (a TCP listener whose path shares the
// hops of what ns sent before): once it is connected, every packet ns sent
// earlier on that path has been delivered or dropped (see testCPU).
func barrier(t *testing.T, ns netns.NsHandle, addr string) {
	t.Helper()
	if _, err := dial(t, ns, addr); err != nil {
		t.Fatalf("barrier: dial %s: %v", addr, err)
	}
}

// queued returns the payloads waiting on c, without waiting.
func queued(t *testing.T, c *net.UDPConn) []string {
	t.Helper()
	rc, err := c.SyscallConn()
	must(t, "raw conn", err)
	var got []string
	must(t, "control", rc.Control(func(fd uintptr) {
		buf := make([]byte, 2048)
		for {
			n, _, err := unix.Recvfrom(int(fd), buf, unix.MSG_DONTWAIT)
			if err != nil {
				return
			}
			got = append(got, string(buf[:n]))
		}
	}))
	return got
}

// recvUDP waits (at most 5 s) for a datagram on c.
func recvUDP(t *testing.T, c *net.UDPConn) (string, *net.UDPAddr, error) {
	t.Helper()
	buf := make([]byte, 2048)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, from, err := c.ReadFromUDP(buf)
	return string(buf[:n]), from, err
}

// sendUDP sends payload from ns to addr from a socket bound to laddr ("" for any).
func sendUDP(t *testing.T, ns netns.NsHandle, laddr, addr, payload string) *net.UDPConn {
	t.Helper()
	var c *net.UDPConn
	inNS(t, ns, func() {
		var la *net.UDPAddr
		if laddr != "" {
			var err error
			la, err = net.ResolveUDPAddr("udp", laddr)
			must(t, "resolve "+laddr, err)
		}
		ra, err := net.ResolveUDPAddr("udp", addr)
		must(t, "resolve "+addr, err)
		c, err = net.ListenUDP("udp", la)
		must(t, "udp socket", err)
		_, err = c.WriteToUDP([]byte(payload), ra)
		must(t, "send to "+addr, err)
	})
	t.Cleanup(func() { c.Close() })
	return c
}

// halfOpen starts a TCP connection from ns to addr without waiting for it;
// tcpState tells later how far it got.
func halfOpen(t *testing.T, ns netns.NsHandle, addr *net.TCPAddr) int {
	t.Helper()
	var fd int
	inNS(t, ns, func() {
		family := unix.AF_INET6
		var sa unix.Sockaddr = &unix.SockaddrInet6{Port: addr.Port, Addr: [16]byte(addr.IP.To16())}
		if ip4 := addr.IP.To4(); ip4 != nil {
			family, sa = unix.AF_INET, &unix.SockaddrInet4{Port: addr.Port, Addr: [4]byte(ip4)}
		}
		var err error
		fd, err = unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
		must(t, "socket", err)
		if err := unix.Connect(fd, sa); !errors.Is(err, unix.EINPROGRESS) {
			t.Errorf("connect %s: %v, want EINPROGRESS", addr, err)
		}
	})
	t.Cleanup(func() { unix.Close(fd) })
	return fd
}

// tcpAnswered reports whether the connection of fd got an answer (a SYN-ACK
// or a reset: either way the port was reached).
func tcpAnswered(t *testing.T, fd int) bool {
	t.Helper()
	info, err := unix.GetsockoptTCPInfo(fd, unix.IPPROTO_TCP, unix.TCP_INFO)
	must(t, "TCP_INFO", err)
	const synSent = 2
	return info.State != synSent
}

// Frames, sent as they are from a container's eth0 (a packet socket needs
// no help from the container's own stack: the attacker's view).

func (c *container) send(t *testing.T, frame []byte) {
	t.Helper()
	inNS(t, c.ns, func() {
		fd, err := unix.Socket(unix.AF_PACKET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, 0)
		must(t, "packet socket", err)
		defer unix.Close(fd)
		proto := binary.BigEndian.Uint16(frame[12:14])
		sa := &unix.SockaddrLinklayer{Ifindex: c.ifindex, Protocol: proto<<8 | proto>>8}
		must(t, "send frame", unix.Sendto(fd, frame, 0, sa))
	})
}

func frame(t *testing.T, ls ...gopacket.SerializableLayer) []byte {
	t.Helper()
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	must(t, "serialize frame", gopacket.SerializeLayers(buf, opts, ls...))
	return buf.Bytes()
}

func ether(src, dst net.HardwareAddr, typ layers.EthernetType) *layers.Ethernet {
	return &layers.Ethernet{SrcMAC: src, DstMAC: dst, EthernetType: typ}
}

func udpFrame(t *testing.T, src, dst net.HardwareAddr, from, to string, payload string) []byte {
	t.Helper()
	fa, err := net.ResolveUDPAddr("udp", from)
	must(t, "resolve", err)
	ta, err := net.ResolveUDPAddr("udp", to)
	must(t, "resolve", err)
	udp := &layers.UDP{SrcPort: layers.UDPPort(fa.Port), DstPort: layers.UDPPort(ta.Port)}
	if fa.IP.To4() != nil {
		ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolUDP, SrcIP: fa.IP.To4(), DstIP: ta.IP.To4()}
		udp.SetNetworkLayerForChecksum(ip)
		return frame(t, ether(src, dst, layers.EthernetTypeIPv4), ip, udp, gopacket.Payload(payload))
	}
	ip := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: layers.IPProtocolUDP, SrcIP: fa.IP, DstIP: ta.IP}
	udp.SetNetworkLayerForChecksum(ip)
	return frame(t, ether(src, dst, layers.EthernetTypeIPv6), ip, udp, gopacket.Payload(payload))
}

// icmp6Frame is an ND-style message: hop limit 255, as receivers insist.
func icmp6Frame(t *testing.T, src, dst net.HardwareAddr, from, to net.IP, typ uint8, msg gopacket.SerializableLayer) []byte {
	t.Helper()
	ip := &layers.IPv6{Version: 6, HopLimit: 255, NextHeader: layers.IPProtocolICMPv6, SrcIP: from, DstIP: to}
	icmp := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(typ, 0)}
	icmp.SetNetworkLayerForChecksum(ip)
	return frame(t, ether(src, dst, layers.EthernetTypeIPv6), ip, icmp, msg)
}

func arpFrame(t *testing.T, src, dst net.HardwareAddr, op uint16, senderMAC net.HardwareAddr, sender, target net.IP) []byte {
	t.Helper()
	arp := &layers.ARP{AddrType: layers.LinkTypeEthernet, Protocol: layers.EthernetTypeIPv4,
		HwAddressSize: 6, ProtAddressSize: 4, Operation: op,
		SourceHwAddress: senderMAC, SourceProtAddress: sender.To4(),
		DstHwAddress: make(net.HardwareAddr, 6), DstProtAddress: target.To4()}
	return frame(t, ether(src, dst, layers.EthernetTypeARP), arp)
}

var (
	broadcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	allNodes  = net.HardwareAddr{0x33, 0x33, 0, 0, 0, 1}
)

func solicitedNode(ip net.IP) (net.IP, net.HardwareAddr) {
	ip = ip.To16()
	return net.IP{0xff, 0x02, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0xff, ip[13], ip[14], ip[15]},
		net.HardwareAddr{0x33, 0x33, 0xff, ip[13], ip[14], ip[15]}
}

// neighbour returns the MAC the host's neighbour table holds for ip.
func (l *lab) neighbour(ip net.IP) net.HardwareAddr {
	l.t.Helper()
	family := netlink.FAMILY_V4
	if ip.To4() == nil {
		family = netlink.FAMILY_V6
	}
	ns, err := l.h.NeighList(0, family)
	must(l.t, "neighbours", err)
	for _, n := range ns {
		if n.IP.Equal(ip) {
			return n.HardwareAddr
		}
	}
	return nil
}
