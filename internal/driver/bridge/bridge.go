// Package bridge is ctnet's bridge driver, Docker's default: a network is a
// Linux bridge with the gateway addresses on it and its facts in the
// firewall's sets; an endpoint is a veth pair whose host end is a port of
// that bridge and whose inner end is born in the container's namespace under
// its final name; published ports are elements of the firewall's DNAT maps
// (and of the [::1] table).
package bridge

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/netx"
)

// Docker's bridge driver options, and ctnet's own; anything else is an error.
const (
	OptBridgeName = "com.docker.network.bridge.name"
	OptICC        = "com.docker.network.bridge.enable_icc"
	OptMasquerade = "com.docker.network.bridge.enable_ip_masquerade"
	OptMTU        = "com.docker.network.driver.mtu"
	// OptGatewayMode is Docker's gateway_mode_ipv4: "nat" (the default),
	// "nat-unprotected" (every container port open to whoever routes the
	// subnet via the host) or "routed" (no masquerade, only published ports
	// reachable from outside).
	OptGatewayMode = "com.docker.network.bridge.gateway_mode_ipv4"
	// OptAntiSpoofing=false lets containers send with any source MAC and
	// address (for containers that route others' traffic).
	OptAntiSpoofing = "ctnet.bridge.anti_spoofing"
)

var knownOptions = map[string]bool{OptBridgeName: true, OptICC: true, OptMasquerade: true, OptMTU: true, OptGatewayMode: true, OptAntiSpoofing: true, OptPublishedIPv6: true}

// DefaultBridge is the device of the default network, as docker0 is Docker's.
const DefaultBridge = "ctnet0"

// AliasPrefix marks bridges that ctnet made (IFLA_IFALIAS), so reconcile can
// tell its own leftovers from anybody else's bridges.
const AliasPrefix = "ctnet network "

// errBridgeMissing says the kernel lost a bridge the store knows.
var errBridgeMissing = errors.New("the bridge is missing (deleted behind ctnet's back?); `ctnet system reconcile` recreates it")

// Driver is the bridge driver of one host.
type Driver struct {
	sh    *driver.Shared
	host  *netx.Handle
	alias string // of its bridges: AliasPrefix, or an embedding driver's
}

// New makes the driver over what the host's drivers share.
func New(sh *driver.Shared) *Driver { return &Driver{sh: sh, host: sh.Host, alias: AliasPrefix} }

func (d *Driver) Name() string { return "bridge" }

func option(n driver.Network, k string, def bool) bool {
	if v, ok := n.Options[k]; ok {
		b, _ := strconv.ParseBool(v)
		return b
	}
	return def
}

func optionField(k string) string { return "option:" + k }

// PlanNetwork checks Docker's bridge options and picks the bridge's name
// (br- and the short id, ctnet0 for the default network) and its MTU (the
// option, else the MTU of the link carrying the host's default route). Both
// are recorded in the options, which `network inspect` shows as Docker's.
func (d *Driver) PlanNetwork(n *driver.Network, others []driver.Network) error {
	if err := d.plan(n, others); err != nil {
		return err
	}
	n.Options[OptBridgeName] = n.Device
	n.Options[OptMTU] = strconv.Itoa(n.MTU)
	return nil
}

func (d *Driver) plan(n *driver.Network, others []driver.Network) error {
	for _, k := range slices.Sorted(maps.Keys(n.Options)) {
		if !knownOptions[k] {
			return errdefs.Field(optionField(k), fmt.Sprintf("unknown option %q; the bridge driver takes %s", k, strings.Join(slices.Sorted(maps.Keys(knownOptions)), ", ")))
		}
	}
	for _, k := range []string{OptICC, OptMasquerade, OptAntiSpoofing} {
		if v, ok := n.Options[k]; ok {
			if _, err := strconv.ParseBool(v); err != nil {
				return errdefs.Field(optionField(k), fmt.Sprintf("option %s=%q: want true or false", k, v))
			}
		}
	}
	switch v := n.Options[OptGatewayMode]; v {
	case "", "nat", "nat-unprotected", "routed":
	default:
		return errdefs.Field(optionField(OptGatewayMode), fmt.Sprintf("option %s=%q: want nat, nat-unprotected or routed", OptGatewayMode, v))
	}
	n.Device = n.Options[OptBridgeName]
	if n.Device == "" {
		n.Device = "br-" + n.ID[:min(12, len(n.ID))]
		if n.Default {
			n.Device = DefaultBridge
		}
	}
	if err := netx.ValidIfName(n.Device); err != nil {
		return &errdefs.Error{Kind: errdefs.Invalid, Field: optionField(OptBridgeName), Msg: "bridge name: " + err.Error(), Err: err}
	}
	if err := planPublishedIPv6(n, others); err != nil {
		return err
	}
	for _, o := range others {
		if o.Device == n.Device {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: optionField(OptBridgeName), Msg: fmt.Sprintf("bridge %s is already used by network %q", n.Device, o.Name)}
		}
	}
	if l, err := netx.LinkOrNil(d.host, n.Device); err != nil {
		return err
	} else if l != nil {
		return &errdefs.Error{Kind: errdefs.Conflict, Field: optionField(OptBridgeName), Msg: fmt.Sprintf("an interface named %s already exists on the host; pick another with %s=NAME", n.Device, errdefs.FieldToken)}
	}
	if v, ok := n.Options[OptMTU]; ok {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 68 || mtu > 65535 {
			return errdefs.Field(optionField(OptMTU), fmt.Sprintf("option %s=%q: want a number from 68 to 65535", OptMTU, v))
		}
		n.MTU = mtu
		return nil
	}
	mtu, err := netx.DefaultRouteMTU(d.host)
	if err != nil {
		return err
	}
	n.MTU = mtu
	return nil
}

// rules is the network as the firewall sees it.
func rules(n driver.Network) firewall.Network {
	mode := n.Options[OptGatewayMode]
	masq := option(n, OptMasquerade, true) && mode != "routed"
	f := firewall.Network{
		Bridge:        n.Device,
		Masquerade:    masq && !n.Internal,
		Internal:      n.Internal,
		ICC:           option(n, OptICC, true),
		RoutedIngress: mode == "nat-unprotected",
		AllowSpoofing: !option(n, OptAntiSpoofing, true),
	}
	for _, s := range n.Subnets {
		f.Subnets = append(f.Subnets, netx.IPNet(s.Prefix.Masked()))
	}
	if p := publishedIPv6(n); p.IsValid() {
		f.PublishedIPv6 = netx.IPNet(p)
	}
	return f
}

// gateways are the bridge's addresses: each subnet's gateway, and on an
// IPv4-only network the first address of its private IPv6 /64.
func gateways(n driver.Network) []*net.IPNet {
	var out []*net.IPNet
	for _, s := range n.Subnets {
		out = append(out, &net.IPNet{IP: s.Gateway.AsSlice(), Mask: net.CIDRMask(s.Prefix.Bits(), s.Prefix.Addr().BitLen())})
	}
	if p := publishedIPv6(n); p.IsValid() {
		out = append(out, &net.IPNet{IP: publishedIPv6Gateway(p).AsSlice(), Mask: net.CIDRMask(p.Bits(), 128)})
	}
	return out
}

// CreateNetwork makes the bridge, its addresses and its firewall elements
// exist; it is idempotent and undoes what it made if a later step fails.
func (d *Driver) CreateNetwork(ctx context.Context, n driver.Network) (err error) {
	existed, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil {
		return err
	}
	br, err := netx.EnsureBridge(d.host, n.Device, n.MTU, gateways(n))
	if err != nil {
		return err
	}
	defer func() {
		if err != nil && existed == nil {
			netx.DeleteLink(d.host, n.Device)
		}
	}()
	if alias := d.alias + n.Name; br.Attrs().Alias != alias {
		if err := d.host.LinkSetAlias(br, alias); err != nil {
			return fmt.Errorf("bridge %s: set alias: %w", n.Device, err)
		}
	}
	if err := d.enableForwarding(n.IPv6); err != nil {
		return err
	}
	// A container's router advertisement must not give the host a route
	// (the firewall drops them too).
	if err := netx.SetSysctl(d.host, firewall.AcceptRASysctl(n.Device), "0"); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	// Ports published on 127.0.0.1 are DNATed to the bridge; the kernel
	// routes a loopback source out of it only with route_localnet (the
	// firewall drops what containers send to the host's 127.0.0.0/8).
	if err := netx.SetSysctl(d.host, firewall.RouteLocalnetSysctl(n.Device), "1"); err != nil {
		return err
	}
	fw, err := d.sh.Firewall()
	if err != nil {
		return err
	}
	if err := fw.AddNetwork(rules(n)); err != nil {
		if errors.Is(err, firewall.ErrNoTable) {
			return driver.Stale(err)
		}
		return fmt.Errorf("firewall: %w", err)
	}
	return nil
}

// DeleteNetwork removes the network's firewall elements and its bridge.
// Missing pieces are not errors.
func (d *Driver) DeleteNetwork(ctx context.Context, n driver.Network) error {
	fw, err := d.sh.Firewall()
	if err != nil {
		return err
	}
	if err := fw.DelNetwork(rules(n)); err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	return netx.DeleteLink(d.host, n.Device)
}

// CreateEndpoint names the host end of the veth as Docker hosts show them
// (veth and 7 hex characters of the endpoint id), and checks that its ports
// on [::1] can be served here.
func (d *Driver) CreateEndpoint(n driver.Network, ep *driver.Endpoint) error {
	if len(ep.ID) < 7 {
		return fmt.Errorf("endpoint id %q is too short", ep.ID)
	}
	ep.HostIf = "veth" + ep.ID[:7]
	if ep.MAC != nil && bytes.Equal(ep.MAC, netx.BridgeMAC(n.Device)) {
		return &errdefs.Error{Kind: errdefs.Conflict, Field: "mac-address", Msg: fmt.Sprintf("%s %s is the MAC of bridge %s", errdefs.FieldToken, ep.MAC, n.Device)}
	}
	for _, m := range ep.Ports {
		if !m.HostIP.Is6() || !m.HostIP.IsLoopback() {
			continue
		}
		if !loopback.Supported(m.Proto) {
			return errdefs.Field("publish", fmt.Sprintf("port %s: only tcp and udp can be published on [::1] (the kernel rewrites connect and sendmsg of those only); publish on 127.0.0.1", m))
		}
		if _, err := d.sh.Loopback(); err != nil {
			return &errdefs.Error{Kind: errdefs.Invalid, Field: "publish", Msg: fmt.Sprintf("port %s: %v", m, err), Err: err}
		}
	}
	return nil
}

// Join connects the sandbox to the network: a veth pair born with its peer
// inside the namespace under its final name, the host end enslaved and up,
// then addresses and routes inside.
func (d *Driver) Join(ctx context.Context, n driver.Network, ep driver.Endpoint, sb driver.Sandbox) error {
	ns := sb.Handle()
	undo, err := d.makePair(n, ep, ep.IfName, ns.NS())
	if err != nil {
		return err
	}
	if err := netx.ConfigureIface(ns, ifaceConfig(n, ep)); err != nil {
		undo()
		return fmt.Errorf("%s: %w", ep.IfName, err)
	}
	return nil
}

// makePair makes the endpoint's veth pair, its inner end peer born down in
// peerNS, its host end enslaved and up with the network's port flags; the
// port is bound to the endpoint's MAC and addresses in the firewall while
// the kernel makes the pair, so no frame leaves it unchecked. undo takes it
// all back.
func (d *Driver) makePair(n driver.Network, ep driver.Endpoint, peer string, peerNS netns.NsHandle) (undo func(), err error) {
	br, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil {
		return nil, err
	}
	if br == nil {
		return nil, driver.Stale(fmt.Errorf("bridge %s: %w", n.Device, errBridgeMissing))
	}
	fw, err := d.sh.Firewall()
	if err != nil {
		return nil, err
	}
	fep := endpointRules(n, ep)
	bound := make(chan error, 1)
	go func() { bound <- fw.AddEndpoint(rules(n), fep) }()
	spec := vethSpec(n, ep, br.Attrs().Index, peerNS)
	spec.PeerName = peer
	err = netx.AddVeth(d.host, spec)
	ferr := <-bound
	undo = func() {
		netx.DeleteLink(d.host, ep.HostIf)
		if ferr == nil {
			fw.DelEndpoint(fep)
		}
	}
	switch {
	case errors.Is(err, unix.EXFULL):
		undo()
		return nil, &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("bridge %s has as many ports as the kernel allows (1023): put further containers on another network", n.Device), Err: err}
	case err != nil:
		undo()
		return nil, err
	case errors.Is(ferr, firewall.ErrNoTable):
		undo()
		return nil, driver.Stale(ferr)
	case ferr != nil:
		undo()
		return nil, fmt.Errorf("firewall: %w", ferr)
	}
	if err := d.portFlags(n, ep.HostIf); err != nil {
		undo()
		return nil, err
	}
	return undo, nil
}

// vethSpec is the pair Join makes: the peer born in the sandbox under its
// final name, the host end on the bridge.
func vethSpec(n driver.Network, ep driver.Endpoint, master int, peerNS netns.NsHandle) netx.VethSpec {
	return netx.VethSpec{
		HostName:    ep.HostIf,
		PeerName:    ep.IfName,
		PeerNS:      peerNS,
		MTU:         n.MTU,
		MasterIndex: master,
		PeerMAC:     ep.MAC,
		DisableIPv6: !n.IPv6,
		PeerIPv6:    endpointIPv6(n, ep).IsValid(),
		NoRA:        true,
	}
}

// ifaceConfig is the inner end's configuration.
func ifaceConfig(n driver.Network, ep driver.Endpoint) netx.IfaceConfig {
	cfg := driver.IfaceConfig(ep)
	if a := endpointIPv6(n, ep); a.IsValid() {
		cfg.Addrs = append(cfg.Addrs, netx.IPNet(a))
	}
	return cfg
}

// portFlagsOf are the bridge-port flags of a network's endpoints.
func portFlagsOf(n driver.Network) (isolated, hairpin bool) {
	return !option(n, OptICC, true), brNetfilter()
}

// portFlags sets the bridge-port flags a network's endpoints need.
func (d *Driver) portFlags(n driver.Network, hostIf string) error {
	isolated, hairpin := portFlagsOf(n)
	icc := !isolated
	if icc && !hairpin {
		return nil
	}
	l, err := d.host.LinkByName(hostIf)
	if err == nil && !icc {
		// Frames between ports of one bridge never reach an inet hook
		// (unless br_netfilter is loaded), so no-ICC is the bridge's own
		// port isolation: isolated ports reach the bridge, not each other.
		err = d.host.LinkSetIsolated(l, true)
	}
	if err == nil && hairpin {
		// With br_netfilter a container's packet to its own published
		// port is DNATed back to the port it came from: hairpin lets it out.
		err = d.host.LinkSetHairpin(l, true)
	}
	if err != nil {
		return fmt.Errorf("port flags of %s: %w", hostIf, err)
	}
	return nil
}

// Leave removes the endpoint's veth pair (deleting one end deletes both),
// synchronously: that costs the kernel a grace period, so when the namespace
// is about to be dropped the kernel is left to reclaim the pair with it. A
// pair already gone is not an error.
func (d *Driver) Leave(ctx context.Context, n driver.Network, ep driver.Endpoint, nsGoing bool) error {
	if !nsGoing {
		if err := netx.DeleteLink(d.host, ep.HostIf); err != nil {
			return err
		}
	}
	fw, err := d.sh.Firewall()
	if err != nil {
		return err
	}
	return fw.DelEndpoint(endpointRules(n, ep))
}

// endpointRules binds an endpoint's bridge port to its MAC and addresses.
func endpointRules(n driver.Network, ep driver.Endpoint) firewall.Endpoint {
	f := firewall.Endpoint{Port: ep.HostIf, Bridge: n.Device, MAC: ep.MAC}
	for _, a := range ep.Addrs {
		f.IPs = append(f.IPs, a.Addr().AsSlice())
	}
	if a := endpointIPv6(n, ep); a.IsValid() {
		f.IPs = append(f.IPs, a.Addr().AsSlice())
	}
	return f
}

// brNetfilter reports whether bridged traffic passes the IP hooks here.
func brNetfilter() bool {
	_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
	return err == nil
}

// enableForwarding turns routing on in the host namespace.
func (d *Driver) enableForwarding(v6 bool) error {
	files := []string{"/proc/sys/net/ipv4/ip_forward"}
	if v6 {
		files = append(files, "/proc/sys/net/ipv6/conf/all/forwarding")
	}
	for _, f := range files {
		if err := netx.SetSysctl(d.host, f, "1"); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	return nil
}
