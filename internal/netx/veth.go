package netx

import (
	"fmt"
	"net"

	"github.com/vishvananda/netlink/nl"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// VethSpec describes a veth pair from a host namespace into a container's.
type VethSpec struct {
	HostName    string           // host end, in h's namespace, e.g. "veth1a2b3c4"
	PeerName    string           // final name inside the container, e.g. "eth0"
	PeerNS      netns.NsHandle   // container namespace
	MTU         int              // both ends; 0 = kernel default
	MasterIndex int              // bridge to enslave the host end to (0 = none)
	PeerMAC     net.HardwareAddr // optional
	DisableIPv6 bool             // IPv4-only network: no IPv6 on either end
	PeerIPv6    bool             // with DisableIPv6: IPv6 stays on the peer (without router advertisements)
	NoRA        bool             // neither end takes router advertisements (IPv6 left on)
}

// AddVeth creates the pair in one RTM_NEWLINK: the peer is born inside
// PeerNS under its final name (down; ConfigureIface brings it up), the host
// end is born up and already enslaved. Moving or renaming a link after
// creation would cost an RCU grace period each. On failure nothing is left.
func AddVeth(h *Handle, s VethSpec) error {
	if err := ValidIfName(s.HostName); err != nil {
		return fmt.Errorf("veth: host end: %w", err)
	}
	if err := ValidIfName(s.PeerName); err != nil {
		return fmt.Errorf("veth %q: peer: %w", s.HostName, err)
	}
	if !s.PeerNS.IsOpen() {
		return fmt.Errorf("veth %q: peer namespace is not open", s.HostName)
	}
	req, err := h.request(unix.RTM_NEWLINK, unix.NLM_F_CREATE|unix.NLM_F_EXCL|unix.NLM_F_ACK)
	if err != nil {
		return fmt.Errorf("veth %q: %w", s.HostName, err)
	}
	msg := nl.NewIfInfomsg(unix.AF_UNSPEC)
	msg.Flags, msg.Change = unix.IFF_UP, unix.IFF_UP
	req.AddData(msg)
	req.AddData(nl.NewRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.HostName)))
	if s.MTU > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU))))
	}
	if s.MasterIndex > 0 {
		req.AddData(nl.NewRtAttr(unix.IFLA_MASTER, nl.Uint32Attr(uint32(s.MasterIndex))))
	}
	info := nl.NewRtAttr(unix.IFLA_LINKINFO, nil)
	info.AddRtAttr(nl.IFLA_INFO_KIND, nl.NonZeroTerminated("veth"))
	peer := info.AddRtAttr(nl.IFLA_INFO_DATA, nil).AddRtAttr(nl.VETH_INFO_PEER, nil)
	nl.NewIfInfomsgChild(peer, unix.AF_UNSPEC)
	peer.AddRtAttr(unix.IFLA_IFNAME, nl.ZeroTerminated(s.PeerName))
	if s.MTU > 0 {
		peer.AddRtAttr(unix.IFLA_MTU, nl.Uint32Attr(uint32(s.MTU)))
	}
	if s.PeerMAC != nil {
		peer.AddRtAttr(unix.IFLA_ADDRESS, []byte(s.PeerMAC))
	}
	peer.AddRtAttr(unix.IFLA_NET_NS_FD, nl.Uint32Attr(uint32(s.PeerNS)))
	req.AddData(info)
	if _, err := req.Execute(unix.NETLINK_ROUTE, 0); err != nil {
		// The kernel unregisters both ends itself if any step of the create fails.
		return fmt.Errorf("veth %q (peer %q): create: %w", s.HostName, s.PeerName, err)
	}
	success := false
	defer func() {
		if !success {
			_ = DeleteLink(h, s.HostName) // takes the peer with it
		}
	}()
	if s.DisableIPv6 || s.NoRA {
		if err := tuneIPv6(h, s); err != nil {
			return fmt.Errorf("veth %q (peer %q): %w", s.HostName, s.PeerName, err)
		}
	}
	success = true
	return nil
}
