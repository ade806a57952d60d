package bridge

import (
	"context"
	"fmt"
	"net"
	"strings"

	"github.com/vishvananda/netlink"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/netx"
)

// inventory is the host's links, listed before the store is read.
type inventory struct {
	links  []netlink.Link
	byName map[string]netlink.Link
}

// Inventory lists the host's links: ctnet's bridges are those with its alias,
// its veths those on its bridges.
func (d *Driver) Inventory(ctx context.Context) (driver.Inventory, error) {
	links, err := netx.Links(d.host)
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	inv := &inventory{links: links, byName: map[string]netlink.Link{}}
	for _, l := range links {
		inv.byName[l.Attrs().Name] = l
	}
	return inv, nil
}

// Filter is every network's elements and every endpoint's ports.
func (d *Driver) Filter(s driver.State) driver.Filter {
	var f driver.Filter
	_, loErr := d.sh.Loopback()
	for _, n := range s.Networks {
		f.Networks = append(f.Networks, rules(n.Network))
		for _, ep := range n.Endpoints {
			f.Endpoints = append(f.Endpoints, endpointRules(n.Network, ep.Endpoint))
			p := publishedPorts(n.Network, ep.Endpoint, loErr == nil)
			f.Ports = append(f.Ports, p.fw...)
			f.Loopback = append(f.Loopback, p.allLo()...)
		}
	}
	return f
}

// Reconcile recreates missing bridges and repairs drifted ones, deletes
// ctnet's bridges that no network owns, makes the veth of an endpoint whose
// namespace lives on again, puts veths back on a bridge made again, and
// deletes veths on ctnet's bridges that no endpoint owns.
func (d *Driver) Reconcile(ctx context.Context, invAny driver.Inventory, s driver.State, logf driver.Logf) error {
	inv := invAny.(*inventory)
	ours := map[string]bool{}
	for _, n := range s.Networks {
		ours[n.Device] = true
		br := inv.byName[n.Device]
		what := ""
		if br == nil {
			what = "recreated bridge %s of network %q"
		} else if drift := d.drift(br, n.Network); drift != "" {
			what = "repaired bridge %s of network %q: " + drift
		}
		if what != "" {
			if err := d.CreateNetwork(ctx, n.Network); err != nil {
				return fmt.Errorf("network %q: %w", n.Name, err)
			}
			logf(what, n.Device, n.Name)
		}
	}
	for _, l := range inv.links {
		if _, ok := l.(*netlink.Bridge); ok && strings.HasPrefix(l.Attrs().Alias, d.alias) && !ours[l.Attrs().Name] {
			if err := netx.DeleteLink(d.host, l.Attrs().Name); err != nil {
				return err
			}
			logf("deleted bridge %s: no network owns it", l.Attrs().Name)
		}
	}

	owned := map[string]bool{}
	for _, n := range s.Networks {
		for _, ep := range n.Endpoints {
			owned[ep.HostIf] = true
			if inv.byName[ep.HostIf] == nil {
				if ep.NetNS == "" {
					// Made by JoinHost: its caller moved the inner end and
					// knows where; ctnet cannot make it again.
					logf("veth %s of %s on network %q is missing; restart the container to reconnect it", ep.HostIf, ep.Name, n.Name)
					continue
				}
				if err := d.rejoin(ctx, n.Network, ep); err != nil {
					return fmt.Errorf("endpoint %s of %s: %w", ep.HostIf, ep.Name, err)
				}
				logf("reconnected %s to network %q: its veth %s was missing", ep.Name, n.Name, ep.HostIf)
			} else if offBridge(inv, ep.HostIf, n.Device) {
				changed, err := d.reattach(n.Network, ep.HostIf)
				if err != nil {
					return err
				}
				if changed {
					logf("put veth %s of %s back on bridge %s", ep.HostIf, ep.Name, n.Device)
				}
			}
		}
	}
	bridgeIdx := map[int]bool{}
	for _, l := range inv.links {
		if ours[l.Attrs().Name] {
			bridgeIdx[l.Attrs().Index] = true
		}
	}
	for _, l := range inv.links {
		a := l.Attrs()
		if _, ok := l.(*netlink.Veth); ok && bridgeIdx[a.MasterIndex] && strings.HasPrefix(a.Name, "veth") && !owned[a.Name] && !s.Keep[a.Name] {
			if err := netx.DeleteLink(d.host, a.Name); err != nil {
				return err
			}
			logf("deleted veth %s: no endpoint owns it", a.Name)
		}
	}
	return nil
}

// rejoin recreates the veth pair of an endpoint whose namespace lives on,
// with the addresses it holds.
// Another namespace at that path now is left alone: the service releases
// the endpoint.
func (d *Driver) rejoin(ctx context.Context, n driver.Network, ep driver.EndpointState) error {
	_, err := driver.InNamespace(ep.NetNS, ep.NetNSKey, func(sb driver.Sandbox) error {
		if err := netx.DeleteLink(sb.Handle(), ep.IfName); err != nil { // a half of the pair left inside
			return err
		}
		return d.Join(ctx, n, ep.Endpoint, sb)
	})
	return err
}

// reattach puts an endpoint's host veth back on the network's bridge (after
// the bridge was deleted and made again), with its flags. It reports whether
// anything had to change.
func (d *Driver) reattach(n driver.Network, hostIf string) (bool, error) {
	l, err := netx.LinkOrNil(d.host, hostIf)
	if err != nil || l == nil {
		return false, err
	}
	br, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil || br == nil {
		return false, err
	}
	if l.Attrs().MasterIndex == br.Attrs().Index {
		return false, nil
	}
	if err := d.host.LinkSetMaster(l, br); err != nil {
		return false, fmt.Errorf("network %q: enslave %s: %w", n.Name, hostIf, err)
	}
	if err := d.host.LinkSetUp(l); err != nil {
		return false, fmt.Errorf("network %q: %s up: %w", n.Name, hostIf, err)
	}
	return true, d.portFlags(n, hostIf)
}

// offBridge reports whether a host veth is not (or may no longer be) a port
// of its bridge, from the links listed in the inventory; a bridge made again
// since then is not in that list.
func offBridge(inv *inventory, hostIf, bridge string) bool {
	br := inv.byName[bridge]
	return br == nil || inv.byName[hostIf].Attrs().MasterIndex != br.Attrs().Index
}

// drift says what of a network's bridge differs from the store: a gateway
// address gone, another MTU, down.
func (d *Driver) drift(br netlink.Link, n driver.Network) string {
	if br.Attrs().MTU != n.MTU {
		return fmt.Sprintf("MTU %d instead of %d", br.Attrs().MTU, n.MTU)
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		return "it was down"
	}
	addrs, err := netx.Addrs(d.host, br)
	if err != nil {
		return ""
	}
	for _, gw := range gateways(n) {
		found := false
		for _, a := range addrs {
			found = found || a.IPNet.String() == gw.String()
		}
		if !found {
			return "gateway address " + gw.String() + " was missing"
		}
	}
	return ""
}
