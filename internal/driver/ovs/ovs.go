// Package ovs is ctnet's Open vSwitch driver: a network is an access VLAN of
// an OVS bridge (made, or joined when it exists) with the gateway on an OVS
// internal port of its own; an endpoint is a veth pair whose host end is a
// port of that bridge carrying the network's tag and whose inner end is born
// in the container's namespace under its final name. Routed traffic enters
// and leaves the host's stack through the gateway port, so NAT, isolation,
// --internal and published ports are the shared firewall's elements keyed by
// that port's name, exactly as a Linux bridge's are keyed by the bridge's.
//
// Open vSwitch is driven through its database (internal/ovsdb), found as
// ovs-vsctl finds it ($OVS_RUNDIR/db.sock, else /run/openvswitch/db.sock).
// Each change is one transaction; a step made of two (a new network's bridge,
// then its gateway port; an endpoint's port, then its veth) leaves, when cut
// in between, only what reconcile recognises by its external_ids and
// repairs. The datapath is the kernel's where the openvswitch module is
// there, else ovs-vswitchd's userspace one (netdev), whose internal ports are
// taps the kernel routes through like any other device.
//
// Every port of a network, the gateway's too, is an access port of its VLAN
// (tag 0 when none is given): an untagged OVS port is a trunk of every VLAN.
// Frames between containers of a network are switched by OVS and never
// reach the host's filter, so the firewall's per-port anti-spoofing and
// icc=false (Linux bridge features) are not there.
package ovs

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vishvananda/netlink"

	"github.com/ctnet/ctnet/internal/crash"
	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/ovsdb"
	"github.com/ctnet/ctnet/internal/portspec"
)

// The driver's options.
const (
	OptBridge   = "ovs.bridge"   // the OVS bridge (default DefaultBridge)
	OptVLAN     = "ovs.vlan"     // the network's access VLAN, 1..4094 (default none: VLAN 0)
	OptDatapath = "ovs.datapath" // system or netdev (default: system where the kernel has it)
)

var knownOptions = map[string]bool{OptBridge: true, OptVLAN: true, OptDatapath: true}

// DefaultBridge is the OVS bridge of networks that name none.
const DefaultBridge = "ctnet-ovs"

// external_ids that mark what ctnet put into the database.
const (
	KeyNetwork  = "ctnet-network"  // on a network's ports: its id
	KeyEndpoint = "ctnet-endpoint" // on an endpoint's port: the endpoint's id
	KeyMade     = "ctnet-made"     // on a bridge ctnet made ("true"): removed with its last network
)

// config is a network's options, parsed.
type config struct {
	Bridge   string
	VLAN     int
	Datapath string // "" until planned
}

func field(k string) string { return "option:" + k }

// parseOptions checks a network's options (pure: no kernel, no database).
func parseOptions(opts map[string]string) (config, error) {
	for _, k := range slices.Sorted(maps.Keys(opts)) {
		if !knownOptions[k] {
			return config{}, errdefs.Field(field(k), fmt.Sprintf("unknown option %q; the ovs driver takes %s", k, strings.Join(slices.Sorted(maps.Keys(knownOptions)), ", ")))
		}
	}
	c := config{Bridge: opts[OptBridge], Datapath: opts[OptDatapath]}
	if c.Bridge == "" {
		c.Bridge = DefaultBridge
	}
	if err := netx.ValidIfName(c.Bridge); err != nil {
		return config{}, &errdefs.Error{Kind: errdefs.Invalid, Field: field(OptBridge), Msg: fmt.Sprintf("option %s=%q: %v", OptBridge, c.Bridge, err), Err: err}
	}
	if v, ok := opts[OptVLAN]; ok {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 4094 || v[0] == '0' {
			return config{}, errdefs.Field(field(OptVLAN), fmt.Sprintf("option %s=%q: want a VLAN id from 1 to 4094", OptVLAN, v))
		}
		c.VLAN = n
	}
	switch c.Datapath {
	case "", ovsdb.DatapathSystem, ovsdb.DatapathNetdev:
	default:
		return config{}, errdefs.Field(field(OptDatapath), fmt.Sprintf("option %s=%q: want system (the kernel's) or netdev (userspace)", OptDatapath, c.Datapath))
	}
	return c, nil
}

func configOf(n driver.Network) config {
	c, _ := parseOptions(n.Options)
	return c
}

// gatewayPort is the network's internal port: its device, in the firewall's
// terms its bridge.
func gatewayPort(id string) string { return "ovs-" + id[:min(11, len(id))] }

// Driver is the OVS driver of one host.
type Driver struct {
	sh   *driver.Shared
	host *netx.Handle
	// br programs published ports and the network's firewall elements as
	// it does for its own bridges: both are keyed by the gateway port.
	br *bridge.Driver

	mu sync.Mutex
	db *ovsdb.Client
}

// New makes the driver over what the host's drivers share.
func New(sh *driver.Shared) *Driver {
	return &Driver{sh: sh, host: sh.Host, br: bridge.NewEmbedded(sh, "ctnet ovs ")}
}

func (d *Driver) Name() string { return "ovs" }

// client is the connection to the database, made on first use (again after
// it broke).
func (d *Driver) client(ctx context.Context) (*ovsdb.Client, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.db != nil {
		if err := d.db.Echo(ctx); err == nil {
			return d.db, nil
		}
		d.db.Close()
		d.db = nil
	}
	c, err := ovsdb.Dial(ctx, "")
	if err != nil {
		return nil, fmt.Errorf("open vswitch database: %w (is ovsdb-server running? ctnet looks where ovs-vsctl does: $OVS_RUNDIR/db.sock, else %s/db.sock)", err, ovsdb.DefaultRunDir)
	}
	d.db = c
	return c, nil
}

// PlanNetwork checks the options, the database and the other networks: one
// VLAN is one network's on a bridge; the datapath is the option, else that of
// the bridge when it exists, else the kernel's where its module is there and
// the userspace one where not. The gateway port (ovs- and the short id) is
// the network's device; bridge and datapath (and the VLAN when given) are
// recorded in the options, which `network inspect` shows.
func (d *Driver) PlanNetwork(n *driver.Network, others []driver.Network) error {
	c, err := parseOptions(n.Options)
	if err != nil {
		return err
	}
	for _, o := range others {
		if oc := configOf(o); o.Options[OptBridge] != "" && oc.Bridge == c.Bridge && oc.VLAN == c.VLAN {
			what := "no VLAN"
			if c.VLAN > 0 {
				what = "VLAN " + strconv.Itoa(c.VLAN)
			}
			return &errdefs.Error{Kind: errdefs.Conflict, Field: field(OptVLAN), Msg: fmt.Sprintf("network %q already has %s on OVS bridge %s; give this one another with %s=N", o.Name, what, c.Bridge, errdefs.FieldToken)}
		}
	}
	ctx := context.Background()
	db, err := d.client(ctx)
	if err != nil {
		return err
	}
	brs, err := db.Bridges(ctx)
	if err != nil {
		return fmt.Errorf("open vswitch database: %w", err)
	}
	for _, b := range brs {
		if b.Name != c.Bridge {
			continue
		}
		have := cmpOr(b.DatapathType, ovsdb.DatapathSystem)
		if c.Datapath != "" && c.Datapath != have {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: field(OptDatapath), Msg: fmt.Sprintf("OVS bridge %s exists with datapath %s; leave %s out or name another bridge", c.Bridge, have, errdefs.FieldToken)}
		}
		c.Datapath = have
	}
	kernel, err := ovsdb.KernelDatapath()
	if err != nil {
		return err
	}
	switch {
	case c.Datapath == "" && kernel:
		c.Datapath = ovsdb.DatapathSystem
	case c.Datapath == "":
		c.Datapath = ovsdb.DatapathNetdev
	case c.Datapath == ovsdb.DatapathSystem && !kernel:
		return errdefs.Field(field(OptDatapath), fmt.Sprintf("option %s=system: this kernel has no openvswitch module; use %s=netdev (userspace), or leave it out", OptDatapath, errdefs.FieldToken))
	}
	if l, err := netx.LinkOrNil(d.host, c.Bridge); err != nil {
		return err
	} else if l != nil && !slices.ContainsFunc(brs, func(b ovsdb.Bridge) bool { return b.Name == c.Bridge }) {
		return &errdefs.Error{Kind: errdefs.Conflict, Field: field(OptBridge), Msg: fmt.Sprintf("an interface named %s exists on the host and is no OVS bridge; pick another with %s=NAME", c.Bridge, errdefs.FieldToken)}
	}
	n.Device = gatewayPort(n.ID)
	mtu, err := netx.DefaultRouteMTU(d.host)
	if err != nil {
		return err
	}
	n.MTU = mtu
	n.Options[OptBridge], n.Options[OptDatapath] = c.Bridge, c.Datapath
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func tag(c config) *int { return ovsdb.Tag(c.VLAN) }

// gatewaySpec is the network's internal port.
func gatewaySpec(n driver.Network) ovsdb.PortSpec {
	c := configOf(n)
	return ovsdb.PortSpec{Bridge: c.Bridge, Name: n.Device, Type: "internal", Tag: tag(c), MTU: n.MTU,
		MAC: netx.BridgeMAC(n.Device).String(), ExternalIDs: map[string]string{KeyNetwork: n.ID}}
}

// endpointSpec is an endpoint's port.
func endpointSpec(n driver.Network, ep driver.Endpoint) ovsdb.PortSpec {
	c := configOf(n)
	return ovsdb.PortSpec{Bridge: c.Bridge, Name: ep.HostIf, Tag: tag(c),
		ExternalIDs: map[string]string{KeyNetwork: n.ID, KeyEndpoint: ep.ID}}
}

// CreateNetwork makes the bridge if it is missing (marked as ctnet's), then
// the gateway port, with its addresses once ovs-vswitchd has made its
// device, and the firewall's elements. It is idempotent; failing, it removes
// what it made.
func (d *Driver) CreateNetwork(ctx context.Context, n driver.Network) (err error) {
	db, err := d.client(ctx)
	if err != nil {
		return err
	}
	c := configOf(n)
	made, err := d.ensureBridge(ctx, db, c)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			db.DeletePort(ctx, c.Bridge, n.Device)
			if made {
				db.DeleteBridge(ctx, c.Bridge)
			}
		}
	}()
	crash.Point("ovs-bridge")
	if err := db.AddPort(ctx, gatewaySpec(n)); err != nil {
		return err
	}
	if err := d.configureGateway(ctx, db, n); err != nil {
		return err
	}
	fw, err := d.sh.Firewall()
	if err != nil {
		return err
	}
	if err := fw.AddNetwork(d.rules(n)); err != nil {
		if errors.Is(err, firewall.ErrNoTable) {
			return driver.Stale(err)
		}
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}

// ensureBridge makes c's bridge if the database lacks it; made says so.
func (d *Driver) ensureBridge(ctx context.Context, db *ovsdb.Client, c config) (made bool, err error) {
	brs, err := db.Bridges(ctx)
	if err != nil {
		return false, fmt.Errorf("open vswitch database: %w", err)
	}
	spec := ovsdb.BridgeSpec{Name: c.Bridge, DatapathType: c.Datapath}
	made = !slices.ContainsFunc(brs, func(b ovsdb.Bridge) bool { return b.Name == c.Bridge })
	if made {
		spec.ExternalIDs = map[string]string{KeyMade: "true"}
	}
	return made, db.EnsureBridge(ctx, spec)
}

// rules is the network as the firewall sees it: what the bridge driver
// programs for a bridge of the same name.
func (d *Driver) rules(n driver.Network) firewall.Network {
	return d.br.Filter(driver.State{Networks: []driver.NetworkState{{Network: n}}}).Networks[0]
}

// configureGateway waits for ovs-vswitchd to apply the database, then gives
// the gateway port's device its addresses and brings it up (a userspace
// datapath's tap is made down), with the settings a Linux bridge of ctnet's
// gets.
func (d *Driver) configureGateway(ctx context.Context, db *ovsdb.Client, n driver.Network) error {
	if err := d.sync(ctx, db); err != nil {
		return err
	}
	if err := db.CheckInterfaces(ctx, n.Device); err != nil {
		return fmt.Errorf("gateway port: %w", err)
	}
	l, err := d.host.LinkByName(n.Device)
	if err != nil {
		return fmt.Errorf("gateway port %s: ovs-vswitchd made no device: %w", n.Device, err)
	}
	for _, gw := range gateways(n) {
		if err := d.host.AddrReplace(l, &netlink.Addr{IPNet: gw}); err != nil {
			return fmt.Errorf("gateway port %s: address %s: %w", n.Device, gw, err)
		}
	}
	if err := d.host.LinkSetUp(l); err != nil {
		return fmt.Errorf("gateway port %s: up: %w", n.Device, err)
	}
	sysctls := [][2]string{{"/proc/sys/net/ipv4/ip_forward", "1"}, {firewall.RouteLocalnetSysctl(n.Device), "1"}}
	if n.IPv6 {
		sysctls = append(sysctls, [2]string{"/proc/sys/net/ipv6/conf/all/forwarding", "1"}, [2]string{firewall.AcceptRASysctl(n.Device), "0"})
	}
	for _, s := range sysctls {
		if err := netx.SetSysctl(d.host, s[0], s[1]); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	return nil
}

// gateways are the gateway port's addresses.
func gateways(n driver.Network) []*net.IPNet {
	var out []*net.IPNet
	for _, s := range n.Subnets {
		out = append(out, &net.IPNet{IP: s.Gateway.AsSlice(), Mask: net.CIDRMask(s.Prefix.Bits(), s.Prefix.Addr().BitLen())})
	}
	return out
}

// DeleteNetwork removes the firewall's elements and the gateway port, and
// the bridge if ctnet made it and no port but its own is left. Missing
// pieces are not errors.
func (d *Driver) DeleteNetwork(ctx context.Context, n driver.Network) error {
	fw, err := d.sh.Firewall()
	if err != nil {
		return err
	}
	if err := fw.DelNetwork(d.rules(n)); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	db, err := d.client(ctx)
	if err != nil {
		return err
	}
	c := configOf(n)
	if err := db.DeletePort(ctx, c.Bridge, n.Device); err != nil {
		return err
	}
	if _, err = d.dropBridgeIfUnused(ctx, db, c.Bridge); err != nil {
		return err
	}
	// ovs-vswitchd removes the devices: done when this returns.
	return d.sync(ctx, db)
}

// syncTimeout bounds the wait for ovs-vswitchd to apply a change.
const syncTimeout = 30 * time.Second

// sync waits until ovs-vswitchd has applied what was committed.
func (d *Driver) sync(ctx context.Context, db *ovsdb.Client) error {
	ctx, cancel := context.WithTimeout(ctx, syncTimeout)
	defer cancel()
	return db.Sync(ctx)
}

// dropBridgeIfUnused deletes a bridge ctnet made once only its own port is
// left on it.
func (d *Driver) dropBridgeIfUnused(ctx context.Context, db *ovsdb.Client, name string) (bool, error) {
	brs, err := db.Bridges(ctx)
	if err != nil {
		return false, err
	}
	for _, b := range brs {
		if b.Name == name && b.ExternalIDs[KeyMade] == "true" && !slices.ContainsFunc(b.Ports, func(p ovsdb.Port) bool { return p.Name != name }) {
			return true, db.DeleteBridge(ctx, name)
		}
	}
	return false, nil
}

// CreateEndpoint names the host end of the veth as the bridge driver does
// and checks the ports as it does.
func (d *Driver) CreateEndpoint(n driver.Network, ep *driver.Endpoint) error {
	return d.br.CreateEndpoint(n, ep)
}

// Join adds the endpoint's port to the database first, then makes the veth
// pair (the inner end born in the sandbox under its final name, the host end
// up), waits for ovs-vswitchd to open the host end, and configures the inner
// one. A port whose device is not there yet waits for it in OVS; cut in
// between, reconcile finds the port by its external_ids.
func (d *Driver) Join(ctx context.Context, n driver.Network, ep driver.Endpoint, sb driver.Sandbox) (err error) {
	db, err := d.client(ctx)
	if err != nil {
		return err
	}
	spec := endpointSpec(n, ep)
	if err := db.AddPort(ctx, spec); err != nil {
		if strings.Contains(err.Error(), "no bridge") {
			return driver.Stale(err)
		}
		return err
	}
	defer func() {
		if err != nil {
			netx.DeleteLink(d.host, ep.HostIf)
			db.DeletePort(ctx, spec.Bridge, spec.Name)
		}
	}()
	crash.Point("ovs-port")
	err = netx.AddVeth(d.host, netx.VethSpec{
		HostName: ep.HostIf, PeerName: ep.IfName, PeerNS: sb.Handle().NS(), MTU: n.MTU,
		PeerMAC: ep.MAC, DisableIPv6: !n.IPv6, NoRA: true,
	})
	if err != nil {
		return err
	}
	// The userspace datapath reads the host end with a packet socket, and
	// the kernel's stack sees every frame too: it must not answer ARP for
	// the host's addresses there (the gateway would then be the veth, past
	// the firewall's view of the network).
	if err := netx.SetSysctl(d.host, "/proc/sys/net/ipv4/conf/"+ep.HostIf+"/arp_ignore", "8"); err != nil {
		return err
	}
	if err := d.sync(ctx, db); err != nil {
		return err
	}
	if err := db.CheckInterfaces(ctx, ep.HostIf); err != nil {
		return err
	}
	if err := netx.ConfigureIface(sb.Handle(), driver.IfaceConfig(ep)); err != nil {
		return fmt.Errorf("%s: %w", ep.IfName, err)
	}
	return nil
}

// Leave deletes the veth (unless its namespace is going: the kernel takes it
// then), then the port: cut in between, the port without a device is what
// reconcile finds.
func (d *Driver) Leave(ctx context.Context, n driver.Network, ep driver.Endpoint, nsGoing bool) error {
	if !nsGoing {
		if err := netx.DeleteLink(d.host, ep.HostIf); err != nil {
			return err
		}
	}
	db, err := d.client(ctx)
	if err != nil {
		return err
	}
	return db.DeletePort(ctx, configOf(n).Bridge, ep.HostIf)
}

// Publish and Unpublish are the bridge driver's: map elements keyed by the
// gateway port, and the [::1] table.
func (d *Driver) Publish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	return d.br.Publish(ctx, n, served(n, ep))
}

func (d *Driver) Unpublish(ctx context.Context, n driver.Network, ep driver.Endpoint) error {
	return d.br.Unpublish(ctx, n, served(n, ep))
}

// served is ep with the ports this driver serves: on an IPv4-only network,
// not those on IPv6 host addresses other than [::1] (the bridge driver's
// private /64 for them is not made on OVS networks).
func served(n driver.Network, ep driver.Endpoint) driver.Endpoint {
	if n.IPv6 {
		return ep
	}
	ep.Ports = slices.DeleteFunc(slices.Clone(ep.Ports), func(m portspec.Mapping) bool { return m.HostIP.Is6() && !m.HostIP.IsLoopback() })
	return ep
}

// Filter is what the bridge driver programs for its networks, without the
// per-port bindings (OVS ports are not a Linux bridge's).
func (d *Driver) Filter(s driver.State) driver.Filter {
	s.Networks = slices.Clone(s.Networks)
	for i, n := range s.Networks {
		eps := slices.Clone(n.Endpoints)
		for j := range eps {
			eps[j].Endpoint = served(n.Network, eps[j].Endpoint)
		}
		s.Networks[i].Endpoints = eps
	}
	f := d.br.Filter(s)
	f.Endpoints = nil
	return f
}

// inventory is the database's bridges and the host's links, read before
// the store; err says why the database could not be read.
type inventory struct {
	err      error
	bridges  map[string]ovsdb.Bridge
	ports    map[string]ovsdb.Port // by name, with their bridge's name in bridgeOf
	bridgeOf map[string]string
	links    map[string]netlink.Link
}

// Inventory reads the database's bridges and the host's links. A host
// without Open vSwitch is not an error here: Reconcile says so only if a
// network needs it.
func (d *Driver) Inventory(ctx context.Context) (driver.Inventory, error) {
	inv := &inventory{bridges: map[string]ovsdb.Bridge{}, ports: map[string]ovsdb.Port{}, bridgeOf: map[string]string{}, links: map[string]netlink.Link{}}
	links, err := netx.Links(d.host)
	if err != nil {
		return nil, fmt.Errorf("list host links: %w", err)
	}
	for _, l := range links {
		inv.links[l.Attrs().Name] = l
	}
	db, err := d.client(ctx)
	if err == nil {
		var brs []ovsdb.Bridge
		if brs, err = db.Bridges(ctx); err == nil {
			for _, b := range brs {
				inv.bridges[b.Name] = b
				for _, p := range b.Ports {
					inv.ports[p.Name], inv.bridgeOf[p.Name] = p, b.Name
				}
			}
		}
	}
	inv.err = err
	return inv, nil
}

// Reconcile makes again what the database or the kernel lost (a bridge, a
// gateway port and its addresses, an endpoint's port or veth — all of it
// after ovsdb-server started on an empty database), and removes ports and
// bridges of ctnet's that nothing owns.
func (d *Driver) Reconcile(ctx context.Context, invAny driver.Inventory, s driver.State, logf driver.Logf) error {
	inv := invAny.(*inventory)
	if inv.err != nil {
		if len(s.Networks) == 0 {
			return nil
		}
		return inv.err
	}
	db, err := d.client(ctx)
	if err != nil {
		return err
	}
	networks := map[string]bool{}
	owned := map[string]bool{}
	for _, n := range s.Networks {
		networks[n.ID] = true
		c := configOf(n.Network)
		p, hasPort := inv.ports[n.Device]
		what := ""
		switch {
		case inv.bridges[c.Bridge].Name == "":
			what = "recreated OVS bridge %s of network %q"
			hasPort = false // went with the bridge
		case !hasPort || inv.bridgeOf[n.Device] != c.Bridge:
			what = "recreated the gateway port on OVS bridge %s of network %q"
		case p.Tag == nil || *p.Tag != c.VLAN:
			what = "repaired the gateway port's VLAN on OVS bridge %s of network %q"
		default:
			if drift := d.drift(inv.links[n.Device], n.Network); drift != "" {
				what = "repaired the gateway port on OVS bridge %s of network %q: " + drift
			}
		}
		if what != "" {
			if hasPort { // made again as it should be
				if err := db.DeletePort(ctx, "", n.Device); err != nil {
					return err
				}
			}
			if err := d.CreateNetwork(ctx, n.Network); err != nil {
				return fmt.Errorf("network %q: %w", n.Name, err)
			}
			logf(what, c.Bridge, n.Name)
		}
		for _, ep := range n.Endpoints {
			owned[ep.HostIf] = true
			switch {
			case inv.links[ep.HostIf] == nil:
				if ep.NetNS == "" {
					logf("veth %s of %s on network %q is missing; restart the container to reconnect it", ep.HostIf, ep.Name, n.Name)
					continue
				}
				if err := d.rejoin(ctx, db, n.Network, ep); err != nil {
					return fmt.Errorf("endpoint %s of %s: %w", ep.HostIf, ep.Name, err)
				}
				logf("reconnected %s to network %q: its veth %s was missing", ep.Name, n.Name, ep.HostIf)
			case inv.bridgeOf[ep.HostIf] != c.Bridge || inv.bridges[c.Bridge].Name == "":
				spec := endpointSpec(n.Network, ep.Endpoint)
				if err := db.DeletePort(ctx, "", ep.HostIf); err != nil {
					return err
				}
				if err := db.AddPort(ctx, spec); err != nil {
					return err
				}
				if err := d.sync(ctx, db); err != nil {
					return err
				}
				logf("put veth %s of %s back on OVS bridge %s", ep.HostIf, ep.Name, c.Bridge)
			}
		}
	}
	for name, p := range inv.ports {
		id := p.ExternalIDs[KeyNetwork]
		if id == "" {
			continue
		}
		switch {
		case p.ExternalIDs[KeyEndpoint] != "" && !owned[name] && !s.Keep[name]:
			if err := netx.DeleteLink(d.host, name); err != nil {
				return err
			}
			if err := db.DeletePort(ctx, "", name); err != nil {
				return err
			}
			logf("deleted port %s of OVS bridge %s: no endpoint owns it", name, inv.bridgeOf[name])
		case p.ExternalIDs[KeyEndpoint] == "" && !networks[id]:
			if err := db.DeletePort(ctx, "", name); err != nil {
				return err
			}
			logf("deleted gateway port %s of OVS bridge %s: no network owns it", name, inv.bridgeOf[name])
		}
	}
	for name, b := range inv.bridges {
		if b.ExternalIDs[KeyMade] != "true" {
			continue
		}
		dropped, err := d.dropBridgeIfUnused(ctx, db, name)
		if err != nil {
			return err
		}
		if dropped {
			logf("deleted OVS bridge %s: no network uses it", name)
		}
	}
	return nil
}

// drift says what of a gateway port's device differs from the network.
func (d *Driver) drift(l netlink.Link, n driver.Network) string {
	if l == nil {
		return "its device was missing"
	}
	if l.Attrs().Flags&net.FlagUp == 0 {
		return "it was down"
	}
	addrs, err := netx.Addrs(d.host, l)
	if err != nil {
		return ""
	}
	for _, gw := range gateways(n) {
		if !slices.ContainsFunc(addrs, func(a netlink.Addr) bool { return a.IPNet.String() == gw.String() }) {
			return "gateway address " + gw.String() + " was missing"
		}
	}
	return ""
}

// rejoin makes the veth pair of an endpoint whose namespace lives on again,
// with the addresses it holds.
// Another namespace at that path now is left alone: the service releases
// the endpoint.
func (d *Driver) rejoin(ctx context.Context, db *ovsdb.Client, n driver.Network, ep driver.EndpointState) error {
	_, err := driver.InNamespace(ep.NetNS, ep.NetNSKey, func(sb driver.Sandbox) error {
		if err := netx.DeleteLink(sb.Handle(), ep.IfName); err != nil { // a half of the pair left inside
			return err
		}
		// ovs-vswitchd must see the port go: one it finds again under the
		// same name keeps reading the deleted device.
		if err := db.DeletePort(ctx, "", ep.HostIf); err != nil {
			return err
		}
		if err := d.sync(ctx, db); err != nil {
			return err
		}
		return d.Join(ctx, n, ep.Endpoint, sb)
	})
	return err
}
