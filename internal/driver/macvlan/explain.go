package macvlan

import (
	"fmt"
	"strconv"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/netx"
)

// The driver says what it would do as ip command lines, from the options
// its methods act on.

var _ driver.Explainer = (*Driver)(nil)

// ExplainCreateNetwork is CreateNetwork as commands.
func (d *Driver) ExplainCreateNetwork(n driver.Network) ([]driver.Command, error) {
	c := configOf(n)
	l, err := netx.LinkOrNil(d.host, c.Parent)
	if err != nil {
		return nil, err
	}
	var out []driver.Command
	switch {
	case l != nil:
		return []driver.Command{driver.Note("parent %s exists: nothing to make (macvlan traffic never passes the host's stack: no firewall elements)", c.Parent)}, nil
	case c.Own:
		out = append(out, driver.Cmd("an internal network without a parent: a bridge with no port and no address stands for Docker's dummy link",
			"ip", "link", "add", c.Parent, "mtu", strconv.Itoa(n.MTU), "type", "bridge"))
	default:
		out = append(out, driver.Cmd(fmt.Sprintf("the 802.1Q sub-interface for VLAN %d", c.VLAN),
			"ip", "link", "add", "link", c.Base, "name", c.Parent, "type", "vlan", "id", strconv.Itoa(c.VLAN)))
	}
	return append(out,
		driver.Cmd("how ctnet knows it made it (removed with the network)", "ip", "link", "set", c.Parent, "alias", alias(n)),
		driver.Cmd("", "ip", "link", "set", c.Parent, "up")), nil
}

// ExplainDeleteNetwork is DeleteNetwork as commands.
func (d *Driver) ExplainDeleteNetwork(n driver.Network) ([]driver.Command, error) {
	l, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil {
		return nil, err
	}
	if l == nil || l.Attrs().Alias != alias(n) {
		return []driver.Command{driver.Note("parent %s is not ctnet's: it stays", n.Device)}, nil
	}
	return []driver.Command{driver.Cmd("ctnet made it for this network", "ip", "link", "del", n.Device)}, nil
}

// ExplainJoin is Join as commands.
func (d *Driver) ExplainJoin(n driver.Network, ep driver.Endpoint, sb driver.Sandbox) ([]driver.Command, error) {
	c := configOf(n)
	in := func(args ...string) []string { return append([]string{"nsenter", "--net=" + sb.Path()}, args...) }
	args := []string{"ip", "link", "add", "link", c.Parent, "name", ep.IfName, "netns", sb.Path(), "mtu", strconv.Itoa(n.MTU)}
	if ep.MAC != nil {
		args = append(args, "address", ep.MAC.String())
	}
	out := []driver.Command{
		driver.Cmd(fmt.Sprintf("the macvlan on %s, born inside the namespace under its final name", c.Parent), append(args, "type", "macvlan", "mode", c.Mode)...),
		driver.Cmd("inside the namespace", in("ip", "link", "set", "lo", "up")...),
	}
	for _, a := range ep.Addrs {
		out = append(out, driver.Cmd("", in("ip", "addr", "add", a.String(), "dev", ep.IfName)...))
	}
	out = append(out, driver.Cmd("", in("ip", "link", "set", ep.IfName, "up")...))
	for _, gw := range ep.Gateways {
		out = append(out, driver.Cmd("the segment's router", in("ip", "route", "replace", "default", "via", gw.String(), "dev", ep.IfName)...))
	}
	return out, nil
}

// ExplainLeave is Leave as commands.
func (d *Driver) ExplainLeave(n driver.Network, ep driver.Endpoint, nsGoing bool) ([]driver.Command, error) {
	if nsGoing || ep.NetNS == "" {
		return []driver.Command{driver.Note("the namespace goes: the kernel deletes its macvlan")}, nil
	}
	return []driver.Command{driver.Cmd("", "nsenter", "--net="+ep.NetNS, "ip", "link", "del", ep.IfName)}, nil
}

// ExplainPublish and ExplainUnpublish: nothing (CreateEndpoint refuses ports).
func (d *Driver) ExplainPublish(n driver.Network, ep driver.Endpoint) ([]driver.Command, error) {
	return nil, nil
}

func (d *Driver) ExplainUnpublish(n driver.Network, ep driver.Endpoint) ([]driver.Command, error) {
	return nil, nil
}
