// Package overlay is ctnet's overlay driver: one network on every host of a
// cluster (hosts sharing an etcd store), as Docker's overlay was with
// --cluster-store and as flannel's vxlan backend is. On each host that has
// endpoints on it, a network is a local bridge (the bridge driver's, by
// composition: the gateway, NAT out through that host, published ports on
// the host the container runs on, the firewall's elements) with a VXLAN
// device as one of its ports: the network's VNI, UDP 4789, the host's
// cluster address as source, learning off and ARP/ND answered by the device
// itself (proxy) from static entries. Which MAC lives behind which host, and
// which address has which MAC, are FDB and neighbour entries programmed from
// the store by the host's agent (SyncPeers); nothing is flooded, so each
// host's gateway answers only its own containers and no ARP crosses.
package overlay

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/netx"
)

// Options: Docker's overlay names (one VNI per network), and the MTU.
const (
	OptVNI = "com.docker.network.driver.overlay.vxlanid_list"
	OptMTU = bridge.OptMTU
)

var knownOptions = map[string]bool{OptVNI: true, OptMTU: true}

const (
	// Port is the IANA VXLAN port.
	Port = 4789
	// AliasPrefix marks the overlay's bridges and VXLAN devices.
	AliasPrefix = "ctnet overlay "
	// firstVNI is where automatic VNIs start, as Docker's overlay (4096
	// and below are left for VLAN-like use).
	firstVNI = 4097
	maxVNI   = 1<<24 - 1
	// Tunnel overhead: outer Ethernet, IP, UDP and VXLAN headers.
	overhead4 = 50
	overhead6 = 70
)

// Driver is the overlay driver of one host.
type Driver struct {
	*bridge.Driver // each network's local bridge, its veths, ports, firewall
	host           *netx.Handle

	mu   sync.Mutex
	self driver.Host
}

// New makes the driver over what the host's drivers share.
func New(sh *driver.Shared) *Driver {
	return &Driver{Driver: bridge.NewEmbedded(sh, AliasPrefix), host: sh.Host}
}

func (d *Driver) Name() string  { return "overlay" }
func (d *Driver) Scope() string { return driver.ScopeGlobal }

// SetHost tells the driver which host it runs on.
func (d *Driver) SetHost(h driver.Host) {
	d.mu.Lock()
	d.self = h
	d.mu.Unlock()
}

func (d *Driver) me() driver.Host {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.self
}

func vni(n driver.Network) int {
	v, _ := strconv.Atoi(n.Options[OptVNI])
	return v
}

// Claims: a VNI is one network's in the whole cluster.
func (d *Driver) Claims(n driver.Network) []string {
	return []string{"VNI " + n.Options[OptVNI]}
}

func vxlanName(n driver.Network) string { return "vx-" + n.ID[:min(12, len(n.ID))] }

// PlanNetwork checks the options, picks the VNI (the lowest free one from
// 4097, unless given), the bridge's name (ov- and the short id) and the MTU
// (the option, else the MTU of the link holding this host's cluster address
// less the tunnel's headers). VNI and MTU are recorded in the options, as
// Docker shows them.
func (d *Driver) PlanNetwork(n *driver.Network, others []driver.Network) error {
	me := d.me()
	if !me.Addr.IsValid() {
		return errdefs.Field("driver", "the overlay driver needs hosts that share a store: run ctnet with --store etcd://HOST:2379[,HOST:2379…] (or $CTNET_STORE) on every host")
	}
	for _, k := range slices.Sorted(maps.Keys(n.Options)) {
		if !knownOptions[k] {
			return errdefs.Field("option:"+k, fmt.Sprintf("unknown option %q; the overlay driver takes %s", k, strings.Join(slices.Sorted(maps.Keys(knownOptions)), ", ")))
		}
	}
	used := map[int]string{}
	for _, o := range others {
		if v := vni(o); v > 0 {
			used[v] = o.Name
		}
	}
	if v, ok := n.Options[OptVNI]; ok {
		id, err := strconv.Atoi(v)
		if err != nil || id < 1 || id > maxVNI || v[0] == '0' {
			return errdefs.Field("option:"+OptVNI, fmt.Sprintf("option %s=%q: want one VNI, a number from 1 to %d", OptVNI, v, maxVNI))
		}
		if o, taken := used[id]; taken {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: "option:" + OptVNI, Msg: fmt.Sprintf("VNI %d is already used by network %q; pick another with %s=N", id, o, errdefs.FieldToken)}
		}
	} else {
		id := firstVNI
		for ; used[id] != ""; id++ {
		}
		if id > maxVNI {
			return errdefs.New(errdefs.Conflict, "every VNI is taken")
		}
		n.Options[OptVNI] = strconv.Itoa(id)
	}
	n.Device = "ov-" + n.ID[:min(12, len(n.ID))]
	if v, ok := n.Options[OptMTU]; ok {
		mtu, err := strconv.Atoi(v)
		if err != nil || mtu < 68 || mtu > 65535 {
			return errdefs.Field("option:"+OptMTU, fmt.Sprintf("option %s=%q: want a number from 68 to 65535", OptMTU, v))
		}
		n.MTU = mtu
	} else {
		ul, err := d.underlay(me.Addr)
		if err != nil {
			return err
		}
		n.MTU = ul.Attrs().MTU - overhead(me.Addr)
		n.Options[OptMTU] = strconv.Itoa(n.MTU)
	}
	return nil
}

func overhead(a netip.Addr) int {
	if a.Is4() {
		return overhead4
	}
	return overhead6
}

// underlay is the link holding the host's cluster address.
func (d *Driver) underlay(a netip.Addr) (netlink.Link, error) {
	addrs, err := netx.Addrs(d.host, nil)
	if err != nil {
		return nil, err
	}
	for _, x := range addrs {
		if ip, ok := netip.AddrFromSlice(x.IP); ok && ip.Unmap() == a {
			return d.host.LinkByIndex(x.LinkIndex)
		}
	}
	return nil, fmt.Errorf("this host's cluster address %s is on none of its interfaces (see --advertise-addr)", a)
}

// CreateNetwork has nothing to make: each host makes a network's kernel
// side at its first endpoint on it (Join) and removes it after its last
// (Reconcile).
func (d *Driver) CreateNetwork(ctx context.Context, n driver.Network) error { return nil }

// DeleteNetwork removes this host's kernel side of the network.
func (d *Driver) DeleteNetwork(ctx context.Context, n driver.Network) error {
	return errors.Join(netx.DeleteLink(d.host, vxlanName(n)), d.Driver.DeleteNetwork(ctx, n))
}

// Join makes the network's kernel side on this host if it is not there yet,
// then the endpoint, as the bridge driver does.
func (d *Driver) Join(ctx context.Context, n driver.Network, ep driver.Endpoint, sb driver.Sandbox) error {
	if err := d.ensure(ctx, n); err != nil {
		return err
	}
	return d.Driver.Join(ctx, n, ep, sb)
}

// ensure makes the local bridge and its VXLAN port exist and agree with n.
func (d *Driver) ensure(ctx context.Context, n driver.Network) error {
	br, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil {
		return err
	}
	vx, err := netx.LinkOrNil(d.host, vxlanName(n))
	if err != nil {
		return err
	}
	if br != nil && vx != nil && d.vxlanDrift(vx, br, n) == "" && br.Attrs().Flags&net.FlagUp != 0 {
		return nil
	}
	if err := d.Driver.CreateNetwork(ctx, n); err != nil {
		return err
	}
	_, err = d.ensureVXLAN(n)
	return err
}

// ensureVXLAN makes the network's VXLAN device exist as configured, on its
// bridge and up; it reports what it had to change ("" for nothing).
func (d *Driver) ensureVXLAN(n driver.Network) (string, error) {
	name := vxlanName(n)
	br, err := netx.LinkOrNil(d.host, n.Device)
	if err != nil {
		return "", err
	}
	if br == nil {
		return "", driver.Stale(fmt.Errorf("bridge %s of network %q is missing", n.Device, n.Name))
	}
	vx, err := netx.LinkOrNil(d.host, name)
	if err != nil {
		return "", err
	}
	what := "made"
	if vx != nil {
		if what = d.vxlanDrift(vx, br, n); what == "" {
			return "", nil
		}
		if err := netx.DeleteLink(d.host, name); err != nil {
			return "", err
		}
	}
	me := d.me()
	ul, err := d.underlay(me.Addr)
	if err != nil {
		return "", err
	}
	l := &netlink.Vxlan{
		LinkAttrs: netlink.LinkAttrs{Name: name, MTU: n.MTU, MasterIndex: br.Attrs().Index},
		VxlanId:   vni(n), VtepDevIndex: ul.Attrs().Index, SrcAddr: me.Addr.AsSlice(),
		Port: Port, Learning: false, Proxy: true,
	}
	if err := d.host.LinkAdd(l); err != nil && !errors.Is(err, unix.EEXIST) {
		netx.DeleteLink(d.host, name)
		return "", fmt.Errorf("network %q: make vxlan %s (VNI %d): %w", n.Name, name, vni(n), err)
	}
	vxl, err := d.host.LinkByName(name)
	if err == nil {
		err = d.host.LinkSetAlias(vxl, AliasPrefix+n.Name)
	}
	if err == nil && vxl.Attrs().MasterIndex != br.Attrs().Index {
		err = d.host.LinkSetMaster(vxl, br)
	}
	if err == nil {
		err = d.host.LinkSetUp(vxl)
	}
	if err != nil {
		netx.DeleteLink(d.host, name)
		return "", fmt.Errorf("network %q: vxlan %s: %w", n.Name, name, err)
	}
	return what, nil
}

// vxlanDrift says how a VXLAN device differs from what n wants ("" if not).
func (d *Driver) vxlanDrift(l netlink.Link, br netlink.Link, n driver.Network) string {
	vx, ok := l.(*netlink.Vxlan)
	me := d.me()
	switch {
	case !ok:
		return "it was a " + l.Type() + " link"
	case vx.VxlanId != vni(n):
		return fmt.Sprintf("VNI %d instead of %d", vx.VxlanId, vni(n))
	case !vx.SrcAddr.Equal(me.Addr.AsSlice()):
		return fmt.Sprintf("local address %s instead of %s", vx.SrcAddr, me.Addr)
	case vx.Port != Port:
		return fmt.Sprintf("port %d instead of %d", vx.Port, Port)
	case vx.Learning || !vx.Proxy:
		return "learning on or proxy off"
	case vx.MTU != n.MTU:
		return fmt.Sprintf("MTU %d instead of %d", vx.MTU, n.MTU)
	case vx.MasterIndex != br.Attrs().Index:
		return "it was off its bridge"
	case vx.Flags&net.FlagUp == 0:
		return "it was down"
	}
	return ""
}

// active is the part of s whose networks have endpoints on this host.
func active(s driver.State) driver.State {
	out := driver.State{Keep: s.Keep}
	for _, n := range s.Networks {
		if len(n.Endpoints) > 0 {
			out.Networks = append(out.Networks, n)
		}
	}
	return out
}

// Filter is what the bridges of the networks with endpoints here need.
func (d *Driver) Filter(s driver.State) driver.Filter { return d.Driver.Filter(active(s)) }

// Reconcile removes the kernel side of networks without endpoints on this
// host, and of networks that are gone; for the others it does what the
// bridge driver does for its bridges and puts their VXLAN devices right.
//
// It lists the links itself, after the store was read: reconcile holds the
// host's exclusive lock, so no endpoint is being made meanwhile, and the
// bridge driver's part must see what this part deleted.
func (d *Driver) Reconcile(ctx context.Context, _ driver.Inventory, s driver.State, logf driver.Logf) error {
	links, err := netx.Links(d.host)
	if err != nil {
		return fmt.Errorf("list host links: %w", err)
	}
	byName := map[string]netlink.Link{}
	for _, l := range links {
		byName[l.Attrs().Name] = l
	}
	act := active(s)
	ours := map[string]bool{} // vxlan devices of the networks in s
	for _, n := range s.Networks {
		ours[vxlanName(n.Network)] = true
	}
	for _, n := range s.Networks {
		if len(n.Endpoints) > 0 || (byName[n.Device] == nil && byName[vxlanName(n.Network)] == nil) {
			continue
		}
		if err := d.DeleteNetwork(ctx, n.Network); err != nil {
			return fmt.Errorf("network %q: %w", n.Name, err)
		}
		logf("removed bridge %s and vxlan %s of network %q: no endpoint on this host", n.Device, vxlanName(n.Network), n.Name)
	}
	for _, l := range links {
		a := l.Attrs()
		if _, ok := l.(*netlink.Vxlan); ok && strings.HasPrefix(a.Alias, AliasPrefix) && !ours[a.Name] && byName[a.Name] != nil {
			if err := netx.DeleteLink(d.host, a.Name); err != nil {
				return err
			}
			logf("deleted vxlan %s: no network owns it", a.Name)
		}
	}
	// What is left, listed again: the bridge driver's part.
	inv, err := d.Driver.Inventory(ctx)
	if err != nil {
		return err
	}
	if err := d.Driver.Reconcile(ctx, inv, act, logf); err != nil {
		return err
	}
	for _, n := range act.Networks {
		what, err := d.ensureVXLAN(n.Network)
		if err != nil {
			return err
		}
		switch what {
		case "":
		case "made":
			logf("recreated vxlan %s of network %q", vxlanName(n.Network), n.Name)
		default:
			logf("repaired vxlan %s of network %q: %s", vxlanName(n.Network), n.Name, what)
		}
	}
	return nil
}

// SyncPeers makes the VXLAN device's forwarding entries (MAC → host), the
// bridge's entries for its port (MAC → the tunnel) and the device's
// neighbour entries (address → MAC, which it answers ARP and ND from)
// exactly those of peers.
func (d *Driver) SyncPeers(ctx context.Context, n driver.Network, peers []driver.Peer, logf driver.Logf) error {
	l, err := netx.LinkOrNil(d.host, vxlanName(n))
	if err != nil || l == nil {
		return err
	}
	idx := l.Attrs().Index
	wantFDB := map[string]netip.Addr{}
	wantNeigh := map[netip.Addr]string{}
	for _, p := range peers {
		if len(p.MAC) != 6 || !p.Host.IsValid() {
			continue
		}
		wantFDB[p.MAC.String()] = p.Host
		for _, a := range p.Addrs {
			wantNeigh[a] = p.MAC.String()
		}
	}
	fdb, err := retryNeigh(d.host, idx, unix.AF_BRIDGE)
	if err != nil {
		return fmt.Errorf("vxlan %s: list forwarding entries: %w", l.Attrs().Name, err)
	}
	have := map[string]netip.Addr{}
	onPort := map[string]bool{} // static entries of the bridge for peers on this port
	var errs []error
	for _, e := range fdb {
		if e.Flags&netlink.NTF_SELF == 0 {
			// The bridge's entries for the port: its own MAC stays; a MAC
			// learned here is a peer's, and one no longer a peer may be a
			// local endpoint's now (a MAC follows its address).
			mac := e.HardwareAddr.String()
			switch _, peer := wantFDB[mac]; {
			case e.State&netlink.NUD_PERMANENT != 0:
			case peer && e.State&netlink.NUD_NOARP != 0:
				onPort[mac] = true
			default:
				e.Flags |= netlink.NTF_MASTER
				if err := d.host.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
					errs = append(errs, err)
				}
			}
			continue
		}
		if e.IP == nil {
			continue
		}
		dst, _ := netip.AddrFromSlice(e.IP)
		mac := e.HardwareAddr.String()
		if want, ok := wantFDB[mac]; ok && want == dst.Unmap() {
			have[mac] = want
			continue
		}
		if err := d.host.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
			errs = append(errs, err)
		} else if _, moved := wantFDB[mac]; !moved {
			logf("network %q: dropped peer %s (host %s)", n.Name, mac, dst.Unmap())
		}
	}
	for mac, dst := range wantFDB {
		hw, _ := net.ParseMAC(mac)
		if !onPort[mac] {
			// Static on the bridge too: frames for a peer go to the tunnel
			// whatever was learned before.
			err := d.host.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_NOARP,
				Flags: netlink.NTF_MASTER, HardwareAddr: hw})
			if err != nil {
				errs = append(errs, fmt.Errorf("bridge entry %s: %w", mac, err))
			}
		}
		if _, ok := have[mac]; ok {
			continue
		}
		err := d.host.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: unix.AF_BRIDGE, State: netlink.NUD_PERMANENT,
			Flags: netlink.NTF_SELF, IP: dst.AsSlice(), HardwareAddr: hw})
		if err != nil {
			errs = append(errs, fmt.Errorf("forwarding entry %s dst %s: %w", mac, dst, err))
			continue
		}
		logf("network %q: peer %s at host %s", n.Name, mac, dst)
	}
	for _, fam := range []int{unix.AF_INET, unix.AF_INET6} {
		neighs, err := retryNeigh(d.host, idx, fam)
		if err != nil {
			return fmt.Errorf("vxlan %s: list neighbours: %w", l.Attrs().Name, err)
		}
		for _, e := range neighs {
			ip, _ := netip.AddrFromSlice(e.IP)
			ip = ip.Unmap()
			if e.State&netlink.NUD_PERMANENT != 0 && wantNeigh[ip] == e.HardwareAddr.String() {
				delete(wantNeigh, ip)
				continue
			}
			if err := d.host.NeighDel(&e); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, err)
			}
		}
	}
	for ip, mac := range wantNeigh {
		hw, _ := net.ParseMAC(mac)
		fam := unix.AF_INET6
		if ip.Is4() {
			fam = unix.AF_INET
		}
		err := d.host.NeighSet(&netlink.Neigh{LinkIndex: idx, Family: fam, State: netlink.NUD_PERMANENT, IP: ip.AsSlice(), HardwareAddr: hw})
		if err != nil {
			errs = append(errs, fmt.Errorf("neighbour entry %s lladdr %s: %w", ip, mac, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("vxlan %s: %w", l.Attrs().Name, errors.Join(errs...))
	}
	return nil
}

// retryNeigh lists a device's entries of a family, retrying dumps
// interrupted by concurrent changes.
func retryNeigh(h *netx.Handle, idx, family int) ([]netlink.Neigh, error) {
	var err error
	for range 5 {
		var ns []netlink.Neigh
		if ns, err = h.NeighList(idx, family); !errors.Is(err, netlink.ErrDumpInterrupted) {
			return ns, err
		}
	}
	return nil, err
}
