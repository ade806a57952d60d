// Package macvlan is ctnet's macvlan driver, with Docker's options: a
// network is a host interface (its parent) whose segment the containers join
// with MACs of their own; an endpoint is a macvlan device born inside the
// container's namespace under its final name, on that parent. Nothing of it
// passes the host's IP stack: no NAT, no published ports, no firewall
// elements; the containers' gateway is a router on the segment.
//
// parent=IFACE.VLAN makes the 802.1Q sub-interface when it is missing, and
// removes it with the network (only one ctnet made: it carries ctnet's
// alias). --internal without a parent gives the network a Linux bridge with
// no ports and no address as its parent, ctnet's stand-in for Docker's dummy
// link (this kernel kind has none): its containers reach each other and
// nothing else.
//
// As with Docker, the host cannot reach its own macvlan containers through
// the parent: the kernel hands a frame from the parent to its macvlans only
// when it comes in from the wire, never one the parent sends.
package macvlan

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/netx"
)

// Docker's macvlan options.
const (
	OptParent = "parent"
	OptMode   = "macvlan_mode"
)

var knownOptions = map[string]bool{OptParent: true, OptMode: true}

// AliasPrefix marks the links ctnet made for a network (a VLAN
// sub-interface, an internal network's bridge), followed by the network's
// short id, so that only those are removed with it.
const AliasPrefix = "ctnet macvlan "

func alias(n driver.Network) string { return AliasPrefix + n.ID[:min(12, len(n.ID))] }

var modes = map[string]netlink.MacvlanMode{
	"bridge":   netlink.MACVLAN_MODE_BRIDGE,
	"private":  netlink.MACVLAN_MODE_PRIVATE,
	"vepa":     netlink.MACVLAN_MODE_VEPA,
	"passthru": netlink.MACVLAN_MODE_PASSTHRU,
}

// config is a network's options, parsed.
type config struct {
	Parent string // the macvlans' lower device
	Base   string // for a VLAN sub-interface: the device it tags frames for
	VLAN   int    // 0: Parent is an interface as it is
	Own    bool   // ctnet makes Parent: a port-less bridge for an internal network
	Mode   string
}

func field(k string) string { return "option:" + k }

// parseOptions checks a network's options (pure: no kernel).
func parseOptions(id string, internal bool, opts map[string]string) (config, error) {
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if !knownOptions[k] {
			return config{}, errdefs.Field(field(k), fmt.Sprintf("unknown option %q; the macvlan driver takes %s", k, strings.Join(slices.Sorted(maps.Keys(knownOptions)), ", ")))
		}
	}
	c := config{Parent: opts[OptParent], Mode: opts[OptMode]}
	if c.Mode == "" {
		c.Mode = "bridge"
	}
	if _, ok := modes[c.Mode]; !ok {
		return config{}, errdefs.Field(field(OptMode), fmt.Sprintf("option %s=%q: want bridge, private, vepa or passthru", OptMode, c.Mode))
	}
	if internal && (c.Parent == "" || c.Parent == internalParent(id)) { // as planned, or recorded
		c.Parent, c.Own = internalParent(id), true
		return c, nil
	}
	if c.Parent == "" {
		return config{}, errdefs.Field(field(OptParent), "the macvlan driver needs -o parent=IFACE (the host interface on the segment the containers join; IFACE.VLAN makes a VLAN sub-interface), or --internal for a network of its own")
	}
	if err := netx.ValidIfName(c.Parent); err != nil {
		return config{}, &errdefs.Error{Kind: errdefs.Invalid, Field: field(OptParent), Msg: fmt.Sprintf("option %s=%q: %v", OptParent, c.Parent, err), Err: err}
	}
	if i := strings.LastIndexByte(c.Parent, '.'); i >= 0 {
		v, err := strconv.Atoi(c.Parent[i+1:])
		if err != nil || v < 1 || v > 4094 || c.Parent[i+1] == '0' || i == 0 {
			return config{}, errdefs.Field(field(OptParent), fmt.Sprintf("option %s=%q: IFACE.VLAN wants a VLAN id from 1 to 4094 after the dot", OptParent, c.Parent))
		}
		c.Base, c.VLAN = c.Parent[:i], v
	}
	return c, nil
}

// internalParent is the bridge of an internal network without a parent, named
// as Docker names its dummy link.
func internalParent(id string) string { return "dm-" + id[:min(12, len(id))] }

func configOf(n driver.Network) config {
	c, _ := parseOptions(n.ID, n.Internal, n.Options)
	return c
}

// Driver is the macvlan driver of one host.
type Driver struct {
	host *netx.Handle
}

// New makes the driver over what the host's drivers share.
func New(sh *driver.Shared) *Driver { return &Driver{host: sh.Host} }

func (d *Driver) Name() string { return "macvlan" }

// PlanNetwork checks the options against the kernel and the other networks:
// the parent (or, for IFACE.VLAN, the interface under it) must exist and no
// other network may use it. The parent is the network's device, its MTU the
// network's; the parent and the mode are recorded, as Docker shows them.
func (d *Driver) PlanNetwork(n *driver.Network, others []driver.Network) error {
	c, err := parseOptions(n.ID, n.Internal, n.Options)
	if err != nil {
		return err
	}
	for _, o := range others {
		if o.Device == c.Parent {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: field(OptParent), Msg: fmt.Sprintf("network %q is already using parent interface %s", o.Name, o.Device)}
		}
	}
	n.Device, n.MTU = c.Parent, 1500
	if !c.Own {
		l, err := netx.LinkOrNil(d.host, c.Parent)
		if err != nil {
			return err
		}
		if l == nil && c.VLAN > 0 {
			if l, err = netx.LinkOrNil(d.host, c.Base); err != nil {
				return err
			}
		}
		if l == nil {
			return errdefs.Field(field(OptParent), fmt.Sprintf("parent interface %s does not exist on the host; name one that `ip link` shows", cmp.Or(c.Base, c.Parent)))
		}
		n.MTU = l.Attrs().MTU
	}
	n.Options[OptParent], n.Options[OptMode] = c.Parent, c.Mode
	return nil
}

// CreateNetwork makes the parent when it is ctnet's to make (a VLAN
// sub-interface that is missing, an internal network's bridge); otherwise
// the parent must exist.
func (d *Driver) CreateNetwork(ctx context.Context, n driver.Network) error {
	_, err := d.ensureParent(n)
	return err
}

// ensureParent makes the parent exist and be up; made says it had to be made.
func (d *Driver) ensureParent(n driver.Network) (made bool, err error) {
	c := configOf(n)
	l, err := netx.LinkOrNil(d.host, c.Parent)
	if err != nil {
		return false, err
	}
	if l != nil {
		if l.Attrs().Alias == alias(n) {
			// Ours: keep it up.
			if err := d.host.LinkSetUp(l); err != nil {
				return false, fmt.Errorf("parent %s: up: %w", c.Parent, err)
			}
		}
		return false, nil
	}
	switch {
	case c.Own:
		// Not netx.EnsureBridge: a bridge given a MAC of its own has no
		// carrier until it has a port, and this one never has one; its
		// macvlans need the carrier.
		err = d.host.LinkAdd(&netlink.Bridge{LinkAttrs: netlink.LinkAttrs{Name: c.Parent, MTU: n.MTU, TxQLen: -1}})
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return false, fmt.Errorf("parent %s: make bridge: %w", c.Parent, err)
		}
		if l, err = d.host.LinkByName(c.Parent); err != nil {
			return false, fmt.Errorf("parent %s: %w", c.Parent, err)
		}
	case c.VLAN > 0:
		base, err := netx.LinkOrNil(d.host, c.Base)
		if err != nil {
			return false, err
		}
		if base == nil {
			return false, driver.Stale(fmt.Errorf("parent %s: interface %s under it is missing", c.Parent, c.Base))
		}
		err = d.host.LinkAdd(&netlink.Vlan{LinkAttrs: netlink.LinkAttrs{Name: c.Parent, ParentIndex: base.Attrs().Index}, VlanId: c.VLAN})
		if errors.Is(err, unix.EOPNOTSUPP) {
			return false, &errdefs.Error{Kind: errdefs.Invalid, Field: field(OptParent), Msg: fmt.Sprintf("option %s=%s: this kernel has no 802.1Q VLAN devices (module 8021q); make the sub-interface another way and name it, or use a parent without .VLAN", OptParent, c.Parent), Err: err}
		}
		if err != nil && !errors.Is(err, unix.EEXIST) {
			return false, fmt.Errorf("parent %s: make VLAN %d on %s: %w", c.Parent, c.VLAN, c.Base, err)
		}
		if l, err = d.host.LinkByName(c.Parent); err != nil {
			return false, fmt.Errorf("parent %s: %w", c.Parent, err)
		}
	default:
		return false, driver.Stale(fmt.Errorf("parent interface %s is missing; bring it back (then `ctnet system reconcile` reconnects the containers) or remove the network", c.Parent))
	}
	err = d.host.LinkSetAlias(l, alias(n))
	if err == nil {
		err = d.host.LinkSetUp(l)
	}
	if err != nil {
		netx.DeleteLink(d.host, c.Parent)
		return false, fmt.Errorf("parent %s: %w", c.Parent, err)
	}
	return true, nil
}

// DeleteNetwork removes the parent if ctnet made it for this network.
func (d *Driver) DeleteNetwork(ctx context.Context, n driver.Network) error {
	l, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil || l == nil || l.Attrs().Alias != alias(n) {
		return err
	}
	return netx.DeleteLink(d.host, n.Device)
}

// CreateEndpoint refuses published ports: a macvlan container is reached at
// its own address, not through the host. It has no host interface.
func (d *Driver) CreateEndpoint(n driver.Network, ep *driver.Endpoint) error {
	if len(ep.Ports) > 0 {
		return errdefs.Field("publish", fmt.Sprintf("network %q is a macvlan network: its containers are reached at their own addresses on the parent's segment, not through the host; drop -p", n.Name))
	}
	return nil
}

// Join makes the endpoint's macvlan on the parent, born inside the sandbox
// under its final name with the endpoint's MAC, then addresses and routes.
func (d *Driver) Join(ctx context.Context, n driver.Network, ep driver.Endpoint, sb driver.Sandbox) error {
	c := configOf(n)
	parent, err := netx.LinkOrNil(d.host, c.Parent)
	if err != nil {
		return err
	}
	if parent == nil {
		return driver.Stale(fmt.Errorf("parent interface %s of network %q is missing", c.Parent, n.Name))
	}
	ns := sb.Handle()
	l := &netlink.Macvlan{
		LinkAttrs: netlink.LinkAttrs{Name: ep.IfName, ParentIndex: parent.Attrs().Index, MTU: n.MTU,
			HardwareAddr: ep.MAC, Namespace: netlink.NsFd(int(ns.NS()))},
		Mode: modes[c.Mode],
	}
	if err := d.host.LinkAdd(l); err != nil {
		if errors.Is(err, unix.EBUSY) && c.Mode == "passthru" {
			return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("network %q is in passthru mode and %s already has its one macvlan", n.Name, c.Parent), Err: err}
		}
		return fmt.Errorf("macvlan %s on %s: %w", ep.IfName, c.Parent, err)
	}
	if err := netx.ConfigureIface(ns, driver.IfaceConfig(ep)); err != nil {
		netx.DeleteLink(ns, ep.IfName)
		return fmt.Errorf("%s: %w", ep.IfName, err)
	}
	return nil
}

// Leave deletes the endpoint's macvlan inside its namespace, unless the
// namespace is going (the kernel deletes it then). A namespace gone, or
// another one at its path, is not an error.
func (d *Driver) Leave(ctx context.Context, n driver.Network, ep driver.Endpoint, nsGoing bool) error {
	if nsGoing || ep.NetNS == "" {
		return nil
	}
	return inNamespace(ep, func(sb driver.Sandbox) error {
		h := sb.Handle()
		l, err := netx.LinkOrNil(h, ep.IfName)
		if _, ok := l.(*netlink.Macvlan); !ok || err != nil {
			return err
		}
		return netx.DeleteLink(h, ep.IfName)
	})
}

// inNamespace runs f in ep's namespace, if it is still the one ep joined;
// a namespace gone takes its links with it, so that is no error.
func inNamespace(ep driver.Endpoint, f func(driver.Sandbox) error) error {
	entered, err := driver.InNamespace(ep.NetNS, ep.NetNSKey, f)
	if !entered {
		return nil
	}
	return err
}

// Publish and Unpublish have nothing to do: CreateEndpoint refuses ports.
func (d *Driver) Publish(ctx context.Context, n driver.Network, ep driver.Endpoint) error { return nil }
func (d *Driver) Unpublish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	return nil
}

// Inventory lists the host's links (the parents, and what ctnet made).
func (d *Driver) Inventory(ctx context.Context) (driver.Inventory, error) {
	links, err := netx.Links(d.host)
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	return links, nil
}

// Filter is empty: nothing of a macvlan network passes the host's stack.
func (d *Driver) Filter(s driver.State) driver.Filter { return driver.Filter{} }

// Reconcile makes again the parents ctnet makes, removes those no network
// owns any more, and makes again the macvlan of an endpoint whose namespace
// lives but lost it (deleted behind ctnet's back, or with its parent).
func (d *Driver) Reconcile(ctx context.Context, invAny driver.Inventory, s driver.State, logf driver.Logf) error {
	links, _ := invAny.([]netlink.Link)
	ours := map[string]bool{}
	for _, n := range s.Networks {
		ours[alias(n.Network)] = true
		made, err := d.ensureParent(n.Network)
		if errors.Is(err, driver.ErrStale) {
			logf("network %q: %v", n.Name, err)
			continue
		}
		if err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
		if made {
			logf("recreated parent %s of network %q", n.Device, n.Name)
		}
		for _, ep := range n.Endpoints {
			if ep.NetNS == "" {
				continue
			}
			var missing bool
			err := inNamespace(ep.Endpoint, func(sb driver.Sandbox) error {
				h := sb.Handle()
				l, err := netx.LinkOrNil(h, ep.IfName)
				if err != nil {
					return err
				}
				if _, ok := l.(*netlink.Macvlan); ok {
					return nil
				}
				missing = true
				if err := netx.DeleteLink(h, ep.IfName); err != nil { // something else under its name
					return err
				}
				return d.Join(ctx, n.Network, ep.Endpoint, sb)
			})
			if err != nil {
				return fmt.Errorf("endpoint %s of %s: %w", ep.IfName, ep.Name, err)
			}
			if missing {
				logf("reconnected %s to network %q: its macvlan %s was missing", ep.Name, n.Name, ep.IfName)
			}
		}
	}
	for _, l := range links {
		if a := l.Attrs(); strings.HasPrefix(a.Alias, AliasPrefix) && !ours[a.Alias] {
			if err := netx.DeleteLink(d.host, a.Name); err != nil {
				return err
			}
			logf("deleted %s %s: no network owns it", l.Type(), a.Name)
		}
	}
	return nil
}
