// Package bridge is ctnet's bridge driver: a network is a Linux bridge with
// the gateway addresses on it and its facts in the firewall's sets; an
// endpoint is a veth pair whose host end is a port of that bridge.
package bridge

import (
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/netx"
)

// AliasPrefix marks bridges that ctnet made (IFLA_IFALIAS), so reconcile can
// tell its own leftovers from anybody else's bridges.
const AliasPrefix = "ctnet network "

// ErrBridgeMissing says the kernel lost a bridge the store knows: stale
// state that reconcile repairs.
var ErrBridgeMissing = errors.New("the bridge is missing (deleted behind ctnet's back?); `ctnet system reconcile` recreates it")

// Network is what the driver needs to know of a network.
type Network struct {
	Name       string
	Bridge     string
	MTU        int
	Gateways   []*net.IPNet // gateway address with the subnet's prefix length
	Subnets    []*net.IPNet
	Masquerade bool
	Internal   bool
	ICC        bool
	IPv6       bool
}

// Endpoint is what the driver needs to know of an endpoint.
type Endpoint struct {
	HostIf   string
	IfName   string
	MAC      net.HardwareAddr
	Addrs    []*net.IPNet
	Gateway4 net.IP
	Gateway6 net.IP
}

// Firewall is the part of the packet filter the driver uses.
type Firewall interface {
	AddNetwork(firewall.Network) error
	DelNetwork(firewall.Network) error
}

// Driver acts in the host namespace that host is a handle of.
type Driver struct {
	host *netlink.Handle
	fw   func() (Firewall, error) // opened only when a network changes
}

func New(host *netlink.Handle, fw func() (Firewall, error)) *Driver {
	return &Driver{host: host, fw: fw}
}

// Rules is the network as the firewall sees it.
func (n Network) Rules() firewall.Network {
	return firewall.Network{
		Bridge:     n.Bridge,
		Subnets:    n.Subnets,
		Masquerade: n.Masquerade && !n.Internal,
		Internal:   n.Internal,
		ICC:        n.ICC,
	}
}

// EnsureNetwork makes the bridge, its addresses and its firewall elements
// exist; it is idempotent and undoes what it made if a later step fails.
func (d *Driver) EnsureNetwork(n Network) (err error) {
	existed, err := netx.LinkOrNil(d.host, n.Bridge)
	if err != nil {
		return err
	}
	br, err := netx.EnsureBridge(d.host, n.Bridge, n.MTU, n.Gateways)
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	defer func() {
		if err != nil && existed == nil {
			netx.DeleteLink(d.host, n.Bridge)
		}
	}()
	if alias := AliasPrefix + n.Name; br.Attrs().Alias != alias {
		if err := d.host.LinkSetAlias(br, alias); err != nil {
			return fmt.Errorf("network %q: bridge %s: set alias: %w", n.Name, n.Bridge, err)
		}
	}
	if err := enableForwarding(n.IPv6); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	// Ports published on 127.0.0.1 are DNATed to the bridge; the kernel
	// routes a loopback source out of it only with route_localnet (the
	// firewall drops what containers send to the host's 127.0.0.0/8).
	if err := writeSysctl(firewall.RouteLocalnetSysctl(n.Bridge), "1"); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	fw, err := d.fw()
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	if err := fw.AddNetwork(n.Rules()); err != nil {
		return fmt.Errorf("network %q: firewall: %w", n.Name, err)
	}
	return nil
}

// DeleteNetwork removes the network's firewall elements and its bridge.
// Missing pieces are not errors.
func (d *Driver) DeleteNetwork(n Network) error {
	fw, err := d.fw()
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	if err := fw.DelNetwork(n.Rules()); err != nil {
		return fmt.Errorf("network %q: firewall: %w", n.Name, err)
	}
	if err := netx.DeleteLink(d.host, n.Bridge); err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return nil
}

// Join connects the namespace ns to the network: a veth pair born with its
// peer inside ns under its final name, the host end enslaved and up, then
// addresses and routes inside ns.
func (d *Driver) Join(n Network, ep Endpoint, ns netns.NsHandle) (err error) {
	br, err := netx.LinkOrNil(d.host, n.Bridge)
	if err != nil {
		return err
	}
	if br == nil {
		return fmt.Errorf("network %q: bridge %s: %w", n.Name, n.Bridge, ErrBridgeMissing)
	}
	err = netx.AddVeth(d.host, netx.VethSpec{
		HostName:    ep.HostIf,
		PeerName:    ep.IfName,
		PeerNS:      ns,
		MTU:         n.MTU,
		MasterIndex: br.Attrs().Index,
		PeerMAC:     ep.MAC,
		DisableIPv6: !n.IPv6,
	})
	if err != nil {
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	defer func() {
		if err != nil {
			netx.DeleteLink(d.host, ep.HostIf)
		}
	}()
	if err := d.portFlags(n, ep.HostIf); err != nil {
		return err
	}
	ch, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("network %q: open container namespace: %w", n.Name, err)
	}
	defer ch.Close()
	err = netx.ConfigureIface(ch, netx.IfaceConfig{
		Name:     ep.IfName,
		Addrs:    ep.Addrs,
		Gateway4: ep.Gateway4,
		Gateway6: ep.Gateway6,
	})
	if err != nil {
		return fmt.Errorf("network %q: %s: %w", n.Name, ep.IfName, err)
	}
	return nil
}

// portFlags sets the bridge-port flags a network's endpoints need.
func (d *Driver) portFlags(n Network, hostIf string) error {
	hairpin := brNetfilter()
	if n.ICC && !hairpin {
		return nil
	}
	l, err := d.host.LinkByName(hostIf)
	if err == nil && !n.ICC {
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
		return fmt.Errorf("network %q: port flags of %s: %w", n.Name, hostIf, err)
	}
	return nil
}

// Reattach puts an endpoint's existing host veth back on the network's
// bridge (after the bridge was deleted and made again), with its flags.
// It reports whether anything had to change.
func (d *Driver) Reattach(n Network, ep Endpoint) (bool, error) {
	l, err := netx.LinkOrNil(d.host, ep.HostIf)
	if err != nil || l == nil {
		return false, err
	}
	br, err := netx.LinkOrNil(d.host, n.Bridge)
	if err != nil || br == nil {
		return false, err
	}
	if l.Attrs().MasterIndex == br.Attrs().Index {
		return false, nil
	}
	if err := d.host.LinkSetMaster(l, br); err != nil {
		return false, fmt.Errorf("network %q: enslave %s: %w", n.Name, ep.HostIf, err)
	}
	if err := d.host.LinkSetUp(l); err != nil {
		return false, fmt.Errorf("network %q: %s up: %w", n.Name, ep.HostIf, err)
	}
	return true, d.portFlags(n, ep.HostIf)
}

// Leave removes the endpoint's veth pair (deleting one end deletes both).
// A pair already gone, with its namespace, is not an error.
func (d *Driver) Leave(ep Endpoint) error {
	return netx.DeleteLink(d.host, ep.HostIf)
}

// brNetfilter reports whether bridged traffic passes the IP hooks here.
func brNetfilter() bool {
	_, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables")
	return err == nil
}

// writeSysctl sets a /proc/sys value of the calling thread's namespace
// unless it already has it.
func writeSysctl(path, value string) error {
	if b, err := os.ReadFile(path); err == nil && strings.TrimSpace(string(b)) == value {
		return nil
	}
	if err := os.WriteFile(path, []byte(value+"\n"), 0o644); err != nil {
		return fmt.Errorf("sysctl %s=%s: %w", path, value, err)
	}
	return nil
}

// enableForwarding turns routing on in the namespace of the calling thread,
// which is the host namespace ctnet runs in (/proc/sys/net is per namespace).
func enableForwarding(v6 bool) error {
	files := []string{"/proc/sys/net/ipv4/ip_forward"}
	if v6 {
		files = append(files, "/proc/sys/net/ipv6/conf/all/forwarding")
	}
	for _, f := range files {
		if err := writeSysctl(f, "1"); err != nil {
			return fmt.Errorf("enable forwarding: %w", err)
		}
	}
	return nil
}
