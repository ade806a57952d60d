package netx

import (
	"fmt"
	"os"
	"strings"

	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/namespace"
)

// tuneIPv6 turns IPv6 off on both ends of a new pair (DisableIPv6), or only
// router advertisements (NoRA), through net.ipv6.conf.<if>.*. The kernel refuses IFLA_AF_SPEC inet6
// (addrgenmode) in RTM_NEWLINK (EAFNOSUPPORT), and addrgenmode none would
// still leave a multicast route and MLD per link; disable_ipv6 leaves no
// IPv6 state at all. Neither end has carrier yet (the peer is down), so no
// address or route was made that would need tearing down. /proc/sys/net acts
// on the opener's namespace, hence the thread visits both namespaces.
func tuneIPv6(h *Handle, s VethSpec) error {
	write, peerWrite := writeDisableIPv6, writeDisableIPv6
	if !s.DisableIPv6 {
		write, peerWrite = writeNoRA, writeNoRA
	} else if s.PeerIPv6 {
		peerWrite = writeNoRA
	}
	return inNamespaces(func(enter func(netns.NsHandle) error) error {
		if err := enter(h.NS()); err != nil {
			return err
		}
		if err := write(s.HostName); err != nil {
			return err
		}
		if err := enter(s.PeerNS); err != nil {
			return err
		}
		return peerWrite(s.PeerName)
	})
}

func writeNoRA(ifname string) error {
	p := "/proc/sys/net/ipv6/conf/" + ifname + "/accept_ra"
	if err := os.WriteFile(p, []byte("0"), 0); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("accept_ra on %s: %w", ifname, err)
	}
	return nil
}

// SetSysctl sets a /proc/sys/net value in h's namespace unless it already
// has it.
func SetSysctl(h *Handle, path, value string) error {
	return namespace.In(h.NS(), func() error {
		if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == value {
			return nil
		}
		if err := os.WriteFile(path, []byte(value), 0); err != nil {
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

// inNamespaces runs f on a throwaway thread; f may move it into namespaces
// with enter.
func inNamespaces(f func(enter func(netns.NsHandle) error) error) error {
	return namespace.OnThrowawayThread(func() error {
		return f(func(ns netns.NsHandle) error {
			if err := netns.Set(ns); err != nil {
				return fmt.Errorf("enter namespace: %w", err)
			}
			return nil
		})
	})
}
