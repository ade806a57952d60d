package engine

import (
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strings"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/store"
)

// AttachSpec says which namespace joins which network, and how.
type AttachSpec struct {
	Network   string // name or id
	NetNS     string // path of the namespace (/proc/PID/ns/net, a pin, …)
	IfName    string // default: first free ethN
	IP, IP6   string // static addresses (optional)
	MAC       string // optional
	Aliases   []string
	Container string // owning container id, if any
	Name      string // display name; default the namespace path
}

// Attach connects a network namespace to a network: a veth pair, addresses,
// routes, a lease. On failure nothing is left; stale state met on the way is
// repaired (see repairing).
func (e *Engine) Attach(spec AttachSpec) (ep *Endpoint, err error) {
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	if err := e.prepare(); err != nil {
		return nil, err
	}
	err = e.repairing(func() error {
		ep, err = e.attach(spec)
		return err
	})
	return ep, err
}

// repairing runs op; if op met stale state (a bridge or the firewall table
// deleted behind ctnet's back), reconcile repairs it and op runs once more.
func (e *Engine) repairing(op func() error) error {
	err := op()
	if errors.Is(err, bridge.ErrBridgeMissing) || errors.Is(err, firewall.ErrNoTable) {
		if _, rerr := e.Reconcile(); rerr != nil {
			return errors.Join(err, rerr)
		}
		err = op()
	}
	return err
}

func (e *Engine) attach(spec AttachSpec) (*Endpoint, error) {
	ns, key, err := openNetNS(spec.NetNS)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var ep *Endpoint
	var joined bool
	err = e.store.Update(func(tx store.Tx) error {
		n, err := findNetwork(tx, spec.Network)
		if err != nil {
			return err
		}
		ep, err = e.planEndpoint(tx, n, spec, ns, key)
		if err != nil {
			return err
		}
		if err := e.bridge.Join(n.driverNet(), ep.driverEp(n), ns); err != nil {
			return err
		}
		joined = true
		crashPoint("attach")
		return putJSON(tx, store.Endpoints, ep.Key(), ep)
	})
	if err != nil {
		if joined {
			e.bridge.Leave(ep.driverEp(nil))
		}
		return nil, err
	}
	return ep, nil
}

// planEndpoint checks the request and reserves the endpoint's addresses in
// tx; it touches no kernel state.
func (e *Engine) planEndpoint(tx store.Tx, n *Network, spec AttachSpec, ns netns.NsHandle, key string) (*Endpoint, error) {
	what := fmt.Sprintf("attach %s to network %q", spec.NetNS, n.Name)
	owner := ownerOfNetNS(key)
	if spec.Container != "" {
		owner = ownerOfContainer(spec.Container)
	}
	eps, err := listJSON[Endpoint](tx, store.Endpoints, owner)
	if err != nil {
		return nil, err
	}
	for _, o := range eps {
		if o.NetworkID == n.ID && o.NetNSKey == key {
			return nil, fmt.Errorf("%s: already attached as %s (%s)", what, o.IfName, o.IPv4)
		}
	}
	ep := &Endpoint{
		ID:        newID(),
		Network:   n.Name,
		NetworkID: n.ID,
		Container: spec.Container,
		Name:      spec.Name,
		NetNS:     spec.NetNS,
		NetNSKey:  key,
		IfName:    spec.IfName,
		Aliases:   spec.Aliases,
		Created:   time.Now().UTC(),
	}
	if ep.Name == "" {
		ep.Name = spec.NetNS
	}
	ep.HostIf = "veth" + ep.ID[:7]

	ch, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return nil, fmt.Errorf("%s: open namespace: %w", what, err)
	}
	defer ch.Close()
	if ep.IfName == "" {
		if ep.IfName, err = netx.NextIfName(ch, "eth"); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	} else if err := netx.ValidIfName(ep.IfName); err != nil {
		return nil, fmt.Errorf("%s: --ifname: %w", what, err)
	} else if l, err := netx.LinkOrNil(ch, ep.IfName); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	} else if l != nil {
		return nil, fmt.Errorf("%s: the namespace already has an interface %s; pick another with --ifname", what, ep.IfName)
	}

	static := map[bool]string{true: spec.IP, false: spec.IP6}
	for fam, s := range static {
		if s == "" {
			continue
		}
		a, err := netip.ParseAddr(s)
		if err != nil || a.Is4() != fam {
			flag := map[bool]string{true: "--ip", false: "--ip6"}[fam]
			return nil, fmt.Errorf("%s: %s %q is not an IPv%s address", what, flag, s, map[bool]string{true: "4", false: "6"}[fam])
		}
	}
	for _, is4 := range []bool{true, false} {
		plan, ok, err := subnetFor(n, is4, static[is4])
		if err != nil {
			return nil, err
		}
		if !ok {
			continue
		}
		a, err := e.allocate(tx, n, plan, static[is4])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
		cidr := netip.PrefixFrom(a, plan.Prefix.Bits()).String()
		if is4 {
			ep.IPv4 = cidr
		} else {
			ep.IPv6 = cidr
		}
		if err := tx.Put(store.Leases, leaseKey(n.ID, a), []byte(ep.Key())); err != nil {
			return nil, err
		}
		if err := tx.Put(store.Meta, lastKey(n.ID, plan.Prefix), []byte(a.String())); err != nil {
			return nil, err
		}
	}
	switch {
	case spec.MAC != "":
		mac, err := net.ParseMAC(spec.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 == 1 {
			return nil, fmt.Errorf("%s: --mac-address %q is not a unicast Ethernet address", what, spec.MAC)
		}
		ep.MAC = mac.String()
	case ep.IPv4 != "":
		ep.MAC = ipam.MACFromIP(netip.MustParsePrefix(ep.IPv4).Addr()).String()
	default:
		mac := make(net.HardwareAddr, 6)
		rand.Read(mac)
		mac[0] = mac[0]&^1 | 2 // unicast, locally administered
		ep.MAC = mac.String()
	}
	return ep, nil
}

// subnetFor picks the subnet of one family that an address comes from: the
// one holding the requested address, else the first. ok is false when the
// network has no subnet of that family; a requested address then is an error.
func subnetFor(n *Network, is4 bool, want string) (plan ipam.Subnet, ok bool, err error) {
	var first *ipam.Subnet
	for _, s := range n.Subnets {
		p, err := s.plan()
		if err != nil {
			return plan, false, fmt.Errorf("network %q: stored subnet: %w", n.Name, err)
		}
		if p.Prefix.Addr().Is4() != is4 {
			continue
		}
		if want == "" || p.Prefix.Contains(netip.MustParseAddr(want)) {
			return p, true, nil
		}
		if first == nil {
			first = &p
		}
	}
	if first == nil {
		if want != "" {
			return plan, false, fmt.Errorf("network %q has no IPv%s subnet for address %s", n.Name, map[bool]string{true: "4", false: "6"}[is4], want)
		}
		return plan, false, nil
	}
	return *first, true, nil // Check reports that want lies outside it
}

// allocate reserves a requested address, or the next free one.
func (e *Engine) allocate(tx store.Tx, n *Network, plan ipam.Subnet, want string) (netip.Addr, error) {
	used := func(a netip.Addr) bool { return tx.Get(store.Leases, leaseKey(n.ID, a)) != nil }
	if want != "" {
		a := netip.MustParseAddr(want)
		if err := plan.Check(a); err != nil {
			return netip.Addr{}, err
		}
		if id := tx.Get(store.Leases, leaseKey(n.ID, a)); id != nil {
			by := string(id)
			if o, _ := getJSON[Endpoint](tx, store.Endpoints, by); o != nil {
				by = o.Name
			}
			return netip.Addr{}, ipam.InUse(a, by)
		}
		return a, nil
	}
	last, _ := netip.ParseAddr(string(tx.Get(store.Meta, lastKey(n.ID, plan.Prefix))))
	return plan.Allocate(last, used)
}

func leaseKey(netID string, a netip.Addr) string { return netID + "/" + a.String() }
func lastKey(netID string, p netip.Prefix) string {
	return "last/" + netID + "/" + p.String()
}

// driverEp is the endpoint as the bridge driver sees it; n may be nil when
// only the link names matter (undo, detach).
func (ep *Endpoint) driverEp(n *Network) bridge.Endpoint {
	d := bridge.Endpoint{HostIf: ep.HostIf, IfName: ep.IfName}
	d.MAC, _ = net.ParseMAC(ep.MAC)
	if n == nil {
		return d
	}
	for _, c := range []string{ep.IPv4, ep.IPv6} {
		if c == "" {
			continue
		}
		ip, sn, err := net.ParseCIDR(c)
		if err != nil {
			continue
		}
		d.Addrs = append(d.Addrs, &net.IPNet{IP: ip, Mask: sn.Mask})
		for _, s := range n.Subnets {
			if s.Subnet == sn.String() && !n.Internal {
				if ip.To4() != nil {
					d.Gateway4 = net.ParseIP(s.Gateway)
				} else {
					d.Gateway6 = net.ParseIP(s.Gateway)
				}
			}
		}
	}
	return d
}

// Detach disconnects the namespace at path from a network.
func (e *Engine) Detach(network, path string) error {
	key := ""
	if ns, k, err := openNetNS(path); err == nil {
		ns.Close()
		key = k
	}
	owner := ownerOfNetNS(key)
	if key == "" {
		owner = "" // the namespace is gone: look for its path everywhere
	}
	return e.detach(network, path, owner, func(ep *Endpoint) bool { return ep.NetNSKey == key || ep.NetNS == path })
}

// detach removes the endpoint of network that match picks: its veth pair
// (synchronously: the namespace lives on) and its leases.
func (e *Engine) detach(network, what, owner string, match func(*Endpoint) bool) error {
	if err := RequireRoot(); err != nil {
		return err
	}
	if err := e.prepare(); err != nil {
		return err
	}
	return e.store.Update(func(tx store.Tx) error {
		n, err := findNetwork(tx, network)
		if err != nil {
			return err
		}
		eps, err := listJSON[Endpoint](tx, store.Endpoints, owner)
		if err != nil {
			return err
		}
		for _, ep := range eps {
			if ep.NetworkID != n.ID || !match(&ep) {
				continue
			}
			if err := e.bridge.Leave(ep.driverEp(nil)); err != nil {
				return fmt.Errorf("detach %s from network %q: %w", what, n.Name, err)
			}
			crashPoint("detach")
			return forgetEndpoint(tx, &ep)
		}
		return fmt.Errorf("%s is not connected to network %q; see `ctnet network inspect %s`", what, n.Name, n.Name)
	})
}

// forgetEndpoint drops an endpoint and its leases from the store.
func forgetEndpoint(tx store.Tx, ep *Endpoint) error {
	for _, c := range []string{ep.IPv4, ep.IPv6} {
		if p, err := netip.ParsePrefix(c); err == nil {
			if err := tx.Delete(store.Leases, leaseKey(ep.NetworkID, p.Addr())); err != nil {
				return err
			}
		}
	}
	return tx.Delete(store.Endpoints, ep.Key())
}

// openNetNS opens a network namespace by path and returns it with a key that
// identifies it ("dev:inode") for as long as it lives.
func openNetNS(path string) (netns.NsHandle, string, error) {
	if path == "" {
		return -1, "", fmt.Errorf("no namespace given; pass --netns PATH (for example /proc/PID/ns/net or /run/netns/NAME)")
	}
	ns, err := netns.GetFromPath(path)
	if err != nil {
		if os.IsNotExist(err) {
			return -1, "", fmt.Errorf("namespace %s does not exist", path)
		}
		return -1, "", fmt.Errorf("namespace %s: %w", path, err)
	}
	t, err := unix.IoctlRetInt(int(ns), unix.NS_GET_NSTYPE)
	if err != nil || t != unix.CLONE_NEWNET {
		ns.Close()
		return -1, "", fmt.Errorf("%s is not a network namespace (want /proc/PID/ns/net, /run/netns/NAME or a bind mount of one)", path)
	}
	var st unix.Stat_t
	if err := unix.Fstat(int(ns), &st); err != nil {
		ns.Close()
		return -1, "", fmt.Errorf("namespace %s: %w", path, err)
	}
	return ns, nsKey(st), nil
}

func nsKey(st unix.Stat_t) string { return fmt.Sprintf("%d:%d", st.Dev, st.Ino) }

// netnsKeyOf returns the key of the namespace at path now, or "" if none.
func netnsKeyOf(path string) string {
	var st unix.Stat_t
	if strings.TrimSpace(path) == "" || unix.Stat(path, &st) != nil {
		return ""
	}
	return nsKey(st)
}
