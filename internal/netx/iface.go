package netx

import (
	"errors"
	"fmt"
	"net"
	"strconv"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// IfaceConfig is the IP configuration of one interface in a container.
type IfaceConfig struct {
	Name     string       // "eth0"
	Addrs    []*net.IPNet // IPv4 and/or IPv6 with prefix length
	Gateway4 net.IP       // default route via this (nil = none)
	Gateway6 net.IP
}

// ConfigureIface configures c in the namespace of ch (a handle inside the
// container): lo up, addresses (IPv6 without DAD so they work at once), the
// link up, then default routes. Running it again changes nothing.
func ConfigureIface(ch *Handle, c IfaceConfig) error {
	lo, err := ch.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("link \"lo\": %w", err)
	}
	if lo.Attrs().Flags&net.FlagUp == 0 {
		if err := ch.LinkSetUp(lo); err != nil {
			return fmt.Errorf("link \"lo\": set up: %w", err)
		}
	}
	l, err := ch.LinkByName(c.Name)
	if err != nil {
		return fmt.Errorf("link %q: %w", c.Name, err)
	}
	for _, a := range c.Addrs {
		if err := addAddr(ch, l, a); err != nil {
			return fmt.Errorf("link %q: %w", c.Name, err)
		}
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		if err := ch.LinkSetUp(l); err != nil {
			return fmt.Errorf("link %q: set up: %w", c.Name, err)
		}
	}
	for _, gw := range []net.IP{c.Gateway4, c.Gateway6} {
		if gw == nil {
			continue
		}
		if err := replaceDefaultRoute(ch, l, gw); err != nil {
			return err
		}
	}
	return nil
}

// SetDefaultRoute makes the default route of gw's family in ch's namespace
// go via gw on the link called name, wherever it went before.
func SetDefaultRoute(ch *Handle, name string, gw net.IP) error {
	l, err := ch.LinkByName(name)
	if err != nil {
		return fmt.Errorf("link %q: %w", name, err)
	}
	return replaceDefaultRoute(ch, l, gw)
}

func replaceDefaultRoute(ch *Handle, l netlink.Link, gw net.IP) error {
	r := &netlink.Route{LinkIndex: l.Attrs().Index, Gw: gw, Dst: defaultDst(gw)}
	// Replace keeps it idempotent, corrects a stale gateway and takes the
	// route over from another link.
	if err := ch.RouteReplace(r); err != nil {
		return fmt.Errorf("link %q: default route via %s: %w", l.Attrs().Name, gw, err)
	}
	return nil
}

func defaultDst(gw net.IP) *net.IPNet {
	if gw.To4() != nil {
		return &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}
	}
	return &net.IPNet{IP: net.IPv6zero, Mask: net.CIDRMask(0, 128)}
}

// NextIfName returns the first of prefix0, prefix1, ... that no link in
// ch's namespace is called.
func NextIfName(ch *Handle, prefix string) (string, error) {
	links, err := Links(ch)
	if err != nil {
		return "", fmt.Errorf("list links: %w", err)
	}
	used := make(map[string]bool, len(links))
	for _, l := range links {
		used[l.Attrs().Name] = true
	}
	for i := 0; ; i++ {
		name := prefix + strconv.Itoa(i)
		if err := ValidIfName(name); err != nil {
			return "", err
		}
		if !used[name] {
			return name, nil
		}
	}
}

// HostPrefixes lists the IPv4 and IPv6 prefixes in use in h's namespace: the
// network of every address and the destination of every route in every
// table, except default routes. Broadcast, multicast and anycast entries the
// kernel derives from addresses are left out. Subnet choice avoids all of
// them, including the 0.0.0.0/1 + 128.0.0.0/1 halves VPNs install.
func HostPrefixes(h *Handle) ([]*net.IPNet, error) {
	addrs, err := Addrs(h, nil)
	if err != nil {
		return nil, fmt.Errorf("list addresses: %w", err)
	}
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_ALL, &netlink.Route{Table: unix.RT_TABLE_UNSPEC}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return nil, fmt.Errorf("list routes: %w", err)
	}
	seen := map[string]bool{}
	var out []*net.IPNet
	add := func(n *net.IPNet) {
		if n == nil {
			return
		}
		if ones, _ := n.Mask.Size(); ones == 0 {
			return
		}
		n = &net.IPNet{IP: n.IP.Mask(n.Mask), Mask: n.Mask}
		if ip4 := n.IP.To4(); ip4 != nil && len(n.Mask) == net.IPv4len {
			n.IP = ip4
		}
		if k := n.String(); !seen[k] {
			seen[k] = true
			out = append(out, n)
		}
	}
	for _, a := range addrs {
		add(a.IPNet)
	}
	for _, r := range routes {
		switch r.Type {
		case unix.RTN_BROADCAST, unix.RTN_MULTICAST, unix.RTN_ANYCAST:
			continue
		}
		add(r.Dst)
	}
	return out, nil
}

// DefaultRouteMTU is the MTU of the link carrying the IPv4 default route of
// the main table (the lowest metric if there are several, the smallest link
// MTU of a multipath route), or 1500 if there is no default route.
func DefaultRouteMTU(h *Handle) (int, error) {
	routes, err := retryDump(func() ([]netlink.Route, error) {
		return h.RouteListFiltered(netlink.FAMILY_V4, &netlink.Route{Table: unix.RT_TABLE_MAIN}, netlink.RT_FILTER_TABLE)
	})
	if err != nil {
		return 0, fmt.Errorf("list routes: %w", err)
	}
	var best *netlink.Route
	for i := range routes {
		r := &routes[i]
		if r.Dst != nil {
			if ones, _ := r.Dst.Mask.Size(); ones != 0 {
				continue
			}
		}
		if r.Type != unix.RTN_UNICAST {
			continue
		}
		if best == nil || r.Priority < best.Priority {
			best = r
		}
	}
	if best == nil {
		return 1500, nil
	}
	idx := []int{best.LinkIndex}
	if len(best.MultiPath) > 0 {
		idx = idx[:0]
		for _, nh := range best.MultiPath {
			idx = append(idx, nh.LinkIndex)
		}
	}
	mtu := 0
	for _, i := range idx {
		l, err := h.LinkByIndex(i)
		if err != nil {
			return 0, fmt.Errorf("default route: link %d: %w", i, err)
		}
		if m := l.Attrs().MTU; mtu == 0 || m < mtu {
			mtu = m
		}
	}
	if mtu == 0 {
		return 0, errors.New("default route has no output link")
	}
	return mtu, nil
}
