package ovs

import (
	"fmt"
	"maps"
	"slices"
	"strconv"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/ovsdb"
)

// The driver says what it would do as ovs-vsctl, ip and sysctl command
// lines (each ovs-vsctl line one database transaction, as ctnet makes it),
// from the specs its methods act on.

var _ driver.Explainer = (*Driver)(nil)

func vsctlPort(s ovsdb.PortSpec) []string {
	args := []string{"ovs-vsctl", "add-port", s.Bridge, s.Name, "tag=" + strconv.Itoa(*s.Tag)}
	for _, k := range slices.Sorted(maps.Keys(s.ExternalIDs)) {
		args = append(args, "--", "set", "port", s.Name, "external_ids:"+k+"="+s.ExternalIDs[k])
	}
	if s.Type != "" {
		args = append(args, "--", "set", "interface", s.Name, "type="+s.Type)
	}
	if s.MTU != 0 {
		args = append(args, "--", "set", "interface", s.Name, "mtu_request="+strconv.Itoa(s.MTU))
	}
	if s.MAC != "" {
		args = append(args, "--", "set", "interface", s.Name, "mac="+strconv.Quote(s.MAC))
	}
	return args
}

func sysctl(path, v string) []string { return []string{"sh", "-c", "echo " + v + " > " + path} }

// ExplainCreateNetwork is CreateNetwork as commands.
func (d *Driver) ExplainCreateNetwork(n driver.Network) ([]driver.Command, error) {
	c := configOf(n)
	var out []driver.Command
	if l, err := netx.LinkOrNil(d.host, c.Bridge); err != nil {
		return nil, err
	} else if l == nil {
		out = append(out, driver.Cmd(fmt.Sprintf("the OVS bridge, datapath %s, marked as ctnet's (removed with its last network)", c.Datapath),
			"ovs-vsctl", "--may-exist", "add-br", c.Bridge, "--", "set", "bridge", c.Bridge, "datapath_type="+c.Datapath, "external_ids:"+KeyMade+"=true"))
	} else {
		out = append(out, driver.Note("OVS bridge %s exists: ctnet joins it", c.Bridge))
	}
	gw := gatewaySpec(n)
	out = append(out, driver.Cmd("the gateway on an internal port of its own, an access port of the network's VLAN", vsctlPort(gw)...),
		driver.Note("then ctnet waits for ovs-vswitchd to make its device (as ovs-vsctl does without --no-wait)"))
	for _, a := range gateways(n) {
		out = append(out, driver.Cmd("", "ip", "addr", "replace", a.String(), "dev", n.Device))
	}
	out = append(out, driver.Cmd("", "ip", "link", "set", n.Device, "up"),
		driver.Cmd("routing on", sysctl("/proc/sys/net/ipv4/ip_forward", "1")...),
		driver.Cmd("ports published on 127.0.0.1 are DNATed to the gateway port", sysctl(firewall.RouteLocalnetSysctl(n.Device), "1")...),
		driver.Note("and the network's elements in table inet ctnet, keyed by %s as a Linux bridge's by its name", n.Device))
	return out, nil
}

// ExplainDeleteNetwork is DeleteNetwork as commands.
func (d *Driver) ExplainDeleteNetwork(n driver.Network) ([]driver.Command, error) {
	c := configOf(n)
	return []driver.Command{
		driver.Note("the network's elements leave table inet ctnet"),
		driver.Cmd("", "ovs-vsctl", "--if-exists", "del-port", c.Bridge, n.Device),
		driver.Note("and bridge %s too if ctnet made it and no other port is left on it", c.Bridge),
	}, nil
}

// ExplainJoin is Join as commands.
func (d *Driver) ExplainJoin(n driver.Network, ep driver.Endpoint, sb driver.Sandbox) ([]driver.Command, error) {
	in := func(args ...string) []string { return append([]string{"nsenter", "--net=" + sb.Path()}, args...) }
	veth := []string{"ip", "link", "add", ep.HostIf, "mtu", strconv.Itoa(n.MTU), "up", "type", "veth", "peer", "name", ep.IfName, "netns", sb.Path(), "mtu", strconv.Itoa(n.MTU)}
	if ep.MAC != nil {
		veth = append(veth, "address", ep.MAC.String())
	}
	out := []driver.Command{
		driver.Cmd("the port first: cut before its device exists, reconcile finds it by its marks", vsctlPort(endpointSpec(n, ep))...),
		driver.Cmd("the pair in one request, the inner end born inside the namespace under its final name", veth...),
		driver.Cmd("the kernel sees the host end's frames beside ovs-vswitchd: it must not answer ARP there", sysctl("/proc/sys/net/ipv4/conf/"+ep.HostIf+"/arp_ignore", "8")...),
		driver.Note("then ctnet waits for ovs-vswitchd to open the host end"),
		driver.Cmd("inside the namespace", in("ip", "link", "set", "lo", "up")...),
	}
	for _, a := range ep.Addrs {
		out = append(out, driver.Cmd("", in("ip", "addr", "add", a.String(), "dev", ep.IfName)...))
	}
	out = append(out, driver.Cmd("", in("ip", "link", "set", ep.IfName, "up")...))
	for _, gw := range ep.Gateways {
		out = append(out, driver.Cmd("", in("ip", "route", "replace", "default", "via", gw.String(), "dev", ep.IfName)...))
	}
	return out, nil
}

// ExplainLeave is Leave as commands.
func (d *Driver) ExplainLeave(n driver.Network, ep driver.Endpoint, nsGoing bool) ([]driver.Command, error) {
	var out []driver.Command
	if !nsGoing {
		out = append(out, driver.Cmd("deleting one end deletes both", "ip", "link", "del", ep.HostIf))
	}
	return append(out, driver.Cmd("", "ovs-vsctl", "--if-exists", "del-port", configOf(n).Bridge, ep.HostIf)), nil
}

// ExplainPublish and ExplainUnpublish are the bridge driver's.
func (d *Driver) ExplainPublish(n driver.Network, ep driver.Endpoint) ([]driver.Command, error) {
	return d.br.ExplainPublish(n, served(n, ep))
}

func (d *Driver) ExplainUnpublish(n driver.Network, ep driver.Endpoint) ([]driver.Command, error) {
	return d.br.ExplainUnpublish(n, served(n, ep))
}
