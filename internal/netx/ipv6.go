package netx

import (
	"fmt"
	"os"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// disableIPv6 turns IPv6 off on both ends of a new pair through
// net.ipv6.conf.<if>.disable_ipv6. The kernel refuses IFLA_AF_SPEC inet6
// (addrgenmode) in RTM_NEWLINK (EAFNOSUPPORT), and addrgenmode none would
// still leave a multicast route and MLD per link; disable_ipv6 leaves no
// IPv6 state at all. Neither end has carrier yet (the peer is down), so no
// address or route was made that would need tearing down. /proc/sys/net acts
// on the opener's namespace, hence the thread visits both namespaces.
func disableIPv6(h *netlink.Handle, s VethSpec) error {
	hostNS, err := handleNS(h)
	if err != nil {
		return err
	}
	defer hostNS.Close()
	return inNamespaces(func(enter func(netns.NsHandle) error) error {
		if err := enter(hostNS); err != nil {
			return err
		}
		if err := writeDisableIPv6(s.HostName); err != nil {
			return err
		}
		if err := enter(s.PeerNS); err != nil {
			return err
		}
		return writeDisableIPv6(s.PeerName)
	})
}

// setSysctlIn writes a /proc/sys/net value in h's namespace. A kernel
// without IPv6 has no ipv6 tree: that is not an error.
func setSysctlIn(h *netlink.Handle, path, value string) error {
	ns, err := handleNS(h)
	if err != nil {
		return err
	}
	defer ns.Close()
	return InNetNS(ns, func() error {
		err := os.WriteFile(path, []byte(value), 0)
		if err != nil && !os.IsNotExist(err) {
			return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
		}
		return nil
	})
}

func writeDisableIPv6(ifname string) error {
	p := "/proc/sys/net/ipv6/conf/" + ifname + "/disable_ipv6"
	if err := os.WriteFile(p, []byte("1"), 0); err != nil {
		return fmt.Errorf("disable ipv6 on %s: %w", ifname, err)
	}
	return nil
}

// handleNS returns the network namespace h's socket lives in.
func handleNS(h *netlink.Handle) (netns.NsHandle, error) {
	socks, err := handleSockets(h)
	if err != nil {
		return netns.None(), err
	}
	fd, err := unix.IoctlRetInt(socks[unix.NETLINK_ROUTE].Socket.GetFd(), unix.SIOCGSKNS)
	if err != nil {
		return netns.None(), fmt.Errorf("namespace of netlink handle: %w", err)
	}
	return netns.NsHandle(fd), nil
}

// inNamespaces runs f on a throwaway thread; f may move it into namespaces
// with enter.
func inNamespaces(f func(enter func(netns.NsHandle) error) error) error {
	return OnThrowawayThread(func() error {
		return f(func(ns netns.NsHandle) error {
			if err := netns.Set(ns); err != nil {
				return fmt.Errorf("enter namespace: %w", err)
			}
			return nil
		})
	})
}
