package network

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/ctnet/ctnet/internal/crash"
	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// AttachSpec says which namespace joins which network, and how.
type AttachSpec struct {
	Network string // name or id
	NetNS   string // path of the namespace (/proc/PID/ns/net, a pin, …)
	// Owner is who the attachment belongs to; unset, the namespace itself
	// (by its identity).
	Owner   Owner
	Name    string // for people; default the namespace path
	IfName  string // default: first free ethN
	IP, IP6 string // requested addresses (optional)
	// Allocator hands out the addresses; nil is ctnet's own (leases in
	// the store). Given passes addresses a caller's IPAM chose.
	Allocator Allocator
	MAC       string // optional
	Aliases   []string
	// DNSNames are the names the embedded resolver gives this attachment's
	// addresses; unset, its aliases.
	DNSNames []string
	Resolver *Resolver          // serve the embedded resolver in the namespace
	Ports    []portspec.Mapping // to publish, host ports chosen here when open
	Labels   map[string]string
	// GwPriority: among the namespace's networks, the highest takes the
	// default route; ties go to the name that sorts first (as Docker).
	GwPriority int
}

// Attach connects a network namespace to a network: the driver's interface
// in the namespace, addresses, routes, published ports, names. On failure
// nothing is left; stale kernel state met on the way is repaired.
func (s *Service) Attach(ctx context.Context, spec AttachSpec) (*Attachment, error) {
	var a *Attachment
	err := s.change(ctx, func() error {
		var err error
		// The host's agent may have just left the cluster: start it again.
		for try := 1; ; try++ {
			if a, err = s.attach(ctx, spec); !errors.Is(err, errAgentGone) || try == 3 {
				return err
			}
		}
	})
	if err != nil {
		return nil, err
	}
	if s.usesDNS(a) {
		// A container's first lookup must work: wait until the resolver
		// serves its namespace.
		if err := s.publishDNS(a.Resolver != nil); err != nil {
			s.Detach(ctx, DetachSpec{Owner: a.Owner, Network: a.NetworkID})
			return nil, err
		}
	}
	return a, nil
}

func (s *Service) attach(ctx context.Context, spec AttachSpec) (*Attachment, error) {
	ns, err := s.d.Kernel.OpenNamespace(spec.NetNS)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	what := fmt.Sprintf("attach %s to network %q", spec.NetNS, spec.Network)
	a := &Attachment{
		ID: NewID(), Host: s.d.Host, Owner: spec.Owner, Name: spec.Name, NetNS: spec.NetNS, NetNSKey: ns.Key(),
		IfName: spec.IfName, Aliases: spec.Aliases, DNSNames: spec.DNSNames, Resolver: spec.Resolver,
		Labels: spec.Labels, GwPriority: spec.GwPriority, Created: time.Now().UTC(), Pending: pendingAttach,
	}
	if a.Owner == (Owner{}) {
		a.Owner = NetNS(a.NetNSKey)
	}
	if a.Name == "" {
		a.Name = spec.NetNS
	}
	if a.DNSNames == nil {
		a.DNSNames = spec.Aliases
	}
	if a.IfName == "" {
		if a.IfName, err = ns.NextIfName("eth"); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	} else if err := netx.ValidIfName(a.IfName); err != nil {
		return nil, &errdefs.Error{Kind: errdefs.Invalid, Field: "ifname", Msg: fmt.Sprintf("%s: %s: %v", what, errdefs.FieldToken, err), Err: err}
	} else if has, err := ns.HasLink(a.IfName); err != nil {
		return nil, fmt.Errorf("%s: %w", what, err)
	} else if has {
		return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "ifname", Msg: fmt.Sprintf("%s: the namespace already has an interface %s; pick another with %s", what, a.IfName, errdefs.FieldToken)}
	}
	for _, n := range spec.Aliases {
		if !ValidHostName(n) {
			return nil, errdefs.Field("alias", fmt.Sprintf("%s: alias %q is not a host name: use letters, digits, '-' and '_' in dot-separated labels of 1 to 63 characters", what, n))
		}
	}
	static, err := requested(spec)
	if err != nil {
		return nil, wrapWhat(what, err)
	}
	var mac net.HardwareAddr
	if spec.MAC != "" {
		mac, err = net.ParseMAC(spec.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 == 1 {
			return nil, errdefs.Field("mac-address", fmt.Sprintf("%s: %s %q is not a unicast Ethernet address", what, errdefs.FieldToken, spec.MAC))
		}
	}
	alloc := spec.Allocator
	if alloc == nil {
		alloc = Builtin{}
	}
	// The driver's part first, outside the transaction: it may look at
	// the kernel (can ports be served on [::1] here?).
	n, d, err := s.networkDriver(spec.Network)
	if err != nil {
		return nil, err
	}
	what = fmt.Sprintf("attach %s to network %q", spec.NetNS, n.Name)
	if err := s.joinCluster(ctx, n); err != nil {
		return nil, wrapWhat(what, err)
	}
	ep := driver.Endpoint{ID: a.ID, IfName: a.IfName, Ports: spec.Ports, MAC: mac}
	if err := d.CreateEndpoint(n.driverNet(), &ep); err != nil {
		return nil, wrapWhat(what, err)
	}
	a.HostIf = ep.HostIf

	var peers []peer // the namespace's other attachments, for the default route
	err = s.d.Store.Update(func(tx store.Tx) error {
		now, err := s.findNetwork(tx, n.ID)
		if err != nil {
			return err
		}
		n = now
		if err := s.inCluster(tx, n); err != nil {
			return err
		}
		a.Network, a.NetworkID = n.Name, n.ID
		mine, err := s.ownAttachments(tx, a.Owner.prefix())
		if err != nil {
			return err
		}
		for _, o := range mine {
			if o.NetworkID == n.ID && o.NetNSKey == a.NetNSKey {
				return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("%s: already attached as %s (%s)", what, o.IfName, addrOf(&o))}
			}
		}
		peers = nil
		if sharesRoutes(a.Owner) {
			if peers, err = s.peersOf(tx, a, mine); err != nil {
				return err
			}
		}
		if err := s.allocate(tx, n, a, static, alloc); err != nil {
			return wrapWhat(what, err)
		}
		if err := s.pickMAC(tx, n, a, mac); err != nil {
			return wrapWhat(what, err)
		}
		if a.Ports, err = s.reservePorts(tx, n, a, spec.Ports, true); err != nil {
			return err
		}
		return store.PutJSON(tx, store.Endpoints, a.key(), a)
	})
	if err != nil {
		return nil, err
	}
	crash.Point("attach-planned")

	success := false
	defer func() {
		if !success {
			s.undoAttach(ctx, d, n, a)
		}
	}()
	dn := n.driverNet()
	for tries := 1; ; tries++ {
		ep = routedEndpoint(a, n, peers)
		err := d.Join(ctx, dn, ep, ns)
		if err == nil {
			break
		}
		// Another attach to the same namespace took the name chosen for
		// this one in the meantime: take the next free one.
		if spec.IfName == "" && tries < 8 {
			if has, _ := ns.HasLink(a.IfName); has {
				if next, nerr := ns.NextIfName("eth"); nerr == nil && next != a.IfName {
					a.IfName = next
					continue
				}
			}
		}
		return nil, wrapWhat(what, err)
	}
	crash.Point("attach")
	if len(a.Ports) > 0 {
		err := d.Publish(ctx, dn, ep)
		var w *driver.Warning
		if errors.As(err, &w) {
			s.log("warning: %s: %v", a.Describe(), w.Err)
		} else if err != nil {
			return nil, fmt.Errorf("%s: %w", a.Describe(), err)
		}
		crash.Point("publish")
	}
	a.Pending = ""
	if err := s.d.Store.Update(func(tx store.Tx) error { return store.PutJSON(tx, store.Endpoints, a.key(), a) }); err != nil {
		success = outcomeUnknown(err) // made or not: reconcile tells, undoing would guess
		return nil, err
	}
	success = true
	return a, nil
}

// networkDriver finds a network and its driver.
func (s *Service) networkDriver(ref string) (*Network, driver.Driver, error) {
	if Predefined(ref) {
		return nil, nil, errdefs.New(errdefs.Conflict, fmt.Sprintf("%q is not a network to join but a mode of containers (`ctnet run --network %s`)", ref, ref))
	}
	var n *Network
	err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		n, err = s.findNetwork(tx, ref)
		return err
	})
	if err != nil {
		return nil, nil, err
	}
	d, err := s.d.Drivers.Get(n.Driver)
	if err != nil {
		return nil, nil, fmt.Errorf("network %q: driver %s: %w", n.Name, n.Driver, err)
	}
	return n, d, nil
}

// undoAttach takes back an attachment that did not finish: its kernel side
// (whatever of it was made) and its record, leases and host ports.
func (s *Service) undoAttach(ctx context.Context, d driver.Driver, n *Network, a *Attachment) {
	dn, ep := n.driverNet(), a.endpoint(n)
	d.Unpublish(ctx, dn, ep)
	d.Leave(ctx, dn, ep, false)
	s.d.Store.Update(func(tx store.Tx) error { return forget(tx, a) })
}

// pickMAC gives a its MAC on n: the one asked for, else one derived from the
// IPv4 address (as classic Docker), else a random one; a MAC is never given
// twice on one network.
func (s *Service) pickMAC(tx store.Tx, n *Network, a *Attachment, want net.HardwareAddr) error {
	switch {
	case want != nil:
		a.MAC = MAC(want)
		if by := tx.Get(store.Meta, macKey(n.ID, a.MAC)); by != nil {
			who := "another endpoint"
			if o, _ := store.GetJSON[Attachment](tx, store.Endpoints, string(by)); o != nil {
				who = o.Describe()
			}
			return &errdefs.Error{Kind: errdefs.Conflict, Field: "mac-address", Msg: fmt.Sprintf("%s %s is already used by %s on network %q", errdefs.FieldToken, a.MAC, who, n.Name)}
		}
	case a.IPv4.IsValid():
		a.MAC = MAC(ipam.MACFromIP(a.IPv4.Addr()))
	}
	for a.MAC == nil || tx.Get(store.Meta, macKey(n.ID, a.MAC)) != nil {
		a.MAC = randomMAC()
	}
	return tx.Put(store.Meta, macKey(n.ID, a.MAC), []byte(a.key()))
}

func macKey(netID string, m MAC) string { return macPrefix + netID + "/" + m.String() }

const macPrefix = "mac/"

// requested parses the requested addresses.
func requested(spec AttachSpec) (map[bool]netip.Addr, error) {
	out := map[bool]netip.Addr{}
	for _, r := range []struct {
		is4         bool
		field, want string
	}{{true, "ip", spec.IP}, {false, "ip6", spec.IP6}} {
		if r.want == "" {
			continue
		}
		a, err := netip.ParseAddr(r.want)
		if err != nil || a.Is4() != r.is4 || a.Zone() != "" {
			fam := map[bool]string{true: "4", false: "6"}[r.is4]
			return nil, errdefs.Field(r.field, fmt.Sprintf("%s %q is not an IPv%s address", errdefs.FieldToken, r.want, fam))
		}
		out[r.is4] = a
	}
	return out, nil
}

// allocate gives a one address of each family the network has.
func (s *Service) allocate(tx store.Tx, n *Network, a *Attachment, static map[bool]netip.Addr, alloc Allocator) error {
	for _, is4 := range []bool{true, false} {
		plan, ok, err := subnetFor(n, is4, static[is4])
		if err != nil {
			return err
		}
		if !ok {
			continue
		}
		addr, err := alloc.Allocate(tx, n, plan, static[is4])
		if err != nil {
			return err
		}
		p := netip.PrefixFrom(addr, plan.Prefix.Bits())
		if is4 {
			a.IPv4 = p
		} else {
			a.IPv6 = p
		}
		if err := tx.Put(store.Leases, leaseKey(n.ID, addr), []byte(a.key())); err != nil {
			return err
		}
	}
	return nil
}

// subnetFor picks the subnet of one family that an address comes from: the
// one holding the requested address, else the first. ok is false when the
// network has no subnet of that family; a requested address then is an error.
func subnetFor(n *Network, is4 bool, want netip.Addr) (plan ipam.Subnet, ok bool, err error) {
	var first *ipam.Subnet
	for _, s := range n.Subnets {
		p, err := s.plan()
		if err != nil {
			return plan, false, fmt.Errorf("network %q: stored subnet: %w", n.Name, err)
		}
		if p.Prefix.Addr().Is4() != is4 {
			continue
		}
		if !want.IsValid() || p.Prefix.Contains(want) {
			return p, true, nil
		}
		if first == nil {
			first = &p
		}
	}
	if first == nil {
		if want.IsValid() {
			field := map[bool]string{true: "ip", false: "ip6"}[is4]
			return plan, false, errdefs.Field(field, fmt.Sprintf("network %q has no IPv%s subnet for address %s", n.Name, map[bool]string{true: "4", false: "6"}[is4], want))
		}
		return plan, false, nil
	}
	return *first, true, nil // the allocator reports that want lies outside it
}

func leaseKey(netID string, a netip.Addr) string { return netID + "/" + a.String() }
func lastKey(netID string, p netip.Prefix) string {
	return "last/" + netID + "/" + p.String()
}

func randomMAC() MAC {
	mac := make(net.HardwareAddr, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	return MAC(mac)
}

// endpoint is the attachment as its driver sees it.
func (a *Attachment) endpoint(n *Network) driver.Endpoint {
	ep := driver.Endpoint{ID: a.ID, HostIf: a.HostIf, IfName: a.IfName, MAC: net.HardwareAddr(a.MAC), Addrs: a.Addrs(), Ports: a.Ports,
		NetNS: a.NetNS, NetNSKey: a.NetNSKey}
	if !n.Internal {
		for _, p := range ep.Addrs {
			for _, s := range n.Subnets {
				if s.Subnet.Contains(p.Addr()) && s.Gateway.IsValid() {
					ep.Gateways = append(ep.Gateways, s.Gateway)
					break
				}
			}
		}
	}
	return ep
}

// DetachSpec says which attachments to remove.
type DetachSpec struct {
	Owner   Owner
	Network string // name or id; "" = every network of the owner
	// NamespaceGoing says the owner's namespace is about to be dropped:
	// the kernel reclaims what is inside it, which costs ctnet nothing
	// (removing a veth synchronously costs ~30 ms).
	NamespaceGoing bool
	// What names the owner in errors (`container "web"`); default the
	// owner.
	What string
}

// Detach removes the owner's attachments to one network (or to all): their
// ports, their kernel side, their addresses. With one network named, an owner
// not attached to it is an error.
func (s *Service) Detach(ctx context.Context, spec DetachSpec) error {
	var dns bool
	err := s.change(ctx, func() error {
		var err error
		dns, err = s.detach(ctx, spec)
		return err
	})
	if err == nil && dns {
		err = s.publishDNS(false)
	}
	return err
}

// DetachNamespace removes the attachment of the namespace at path to a
// network. A namespace that is gone is found by its path.
func (s *Service) DetachNamespace(ctx context.Context, network, path string) error {
	if key := s.d.Kernel.NamespaceKey(path); key != "" {
		return s.Detach(ctx, DetachSpec{Owner: NetNS(key), Network: network, What: path})
	}
	var owner Owner
	err := s.d.Store.View(func(tx store.Tx) error {
		atts, err := s.ownAttachments(tx, "")
		for _, a := range atts {
			if a.NetNS == path && a.Owner.Kind == OwnerNetNS {
				owner = a.Owner
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	if owner == (Owner{}) {
		owner = NetNS(path) // nothing: the error below names it
	}
	return s.Detach(ctx, DetachSpec{Owner: owner, Network: network, What: path})
}

func (s *Service) detach(ctx context.Context, spec DetachSpec) (dns bool, err error) {
	what := spec.What
	if what == "" {
		what = spec.Owner.String()
	}
	var doomed []Attachment
	nets := map[string]*Network{}
	err = s.d.Store.Update(func(tx store.Tx) error {
		doomed, nets = nil, map[string]*Network{} // the closure may run again
		var n *Network
		if spec.Network != "" {
			var err error
			if n, err = s.findNetwork(tx, spec.Network); err != nil {
				return err
			}
		}
		atts, err := s.ownAttachments(tx, spec.Owner.prefix())
		if err != nil {
			return err
		}
		for _, a := range atts {
			if n != nil && a.NetworkID != n.ID || a.Pending == pendingAttach {
				continue
			}
			an := n
			if an == nil {
				if an, err = s.findNetwork(tx, a.NetworkID); err != nil {
					return err
				}
			}
			nets[a.ID] = an
			a.Pending = pendingDetach
			if err := store.PutJSON(tx, store.Endpoints, a.key(), a); err != nil {
				return err
			}
			doomed = append(doomed, a)
		}
		if n != nil && len(doomed) == 0 {
			return &errdefs.Error{Kind: errdefs.NotFound, Msg: fmt.Sprintf("%s is not connected to network %q; see `ctnet network inspect %s`", what, n.Name, n.Name)}
		}
		return nil
	})
	if err != nil {
		return false, err
	}
	var errs []error
	for i := range doomed {
		a := &doomed[i]
		n := nets[a.ID]
		if err := s.finishDetach(ctx, n, a, spec.NamespaceGoing); err != nil {
			errs = append(errs, fmt.Errorf("detach %s from network %q: %w", what, n.Name, err))
			continue
		}
		if !spec.NamespaceGoing {
			if err := s.handOverDefaultRoutes(a, n); err != nil {
				errs = append(errs, &driver.Warning{Err: fmt.Errorf("detach %s from network %q: %w", what, n.Name, err)})
			}
		}
		dns = dns || s.usesDNS(a)
	}
	return dns, errors.Join(errs...)
}

// keepAttached takes back the mark of an attachment whose removal failed.
func (s *Service) keepAttached(a *Attachment) error {
	return s.d.Store.Update(func(tx store.Tx) error {
		now, err := store.GetJSON[Attachment](tx, store.Endpoints, a.key())
		if err != nil || now == nil {
			return err
		}
		now.Pending = ""
		return store.PutJSON(tx, store.Endpoints, a.key(), now)
	})
}

// finishDetach removes an attachment marked for removal from the kernel,
// then forgets it.
func (s *Service) finishDetach(ctx context.Context, n *Network, a *Attachment, nsGoing bool) error {
	d, err := s.d.Drivers.Get(n.Driver)
	if err != nil {
		return fmt.Errorf("driver %s: %w", n.Driver, err)
	}
	dn, ep := n.driverNet(), a.endpoint(n)
	if len(a.Ports) > 0 {
		if err := d.Unpublish(ctx, dn, ep); err != nil {
			return errors.Join(err, s.keepAttached(a))
		}
	}
	if err := d.Leave(ctx, dn, ep, nsGoing); err != nil {
		if len(a.Ports) > 0 {
			d.Publish(ctx, dn, ep)
		}
		return errors.Join(err, s.keepAttached(a))
	}
	crash.Point("detach")
	return s.d.Store.Update(func(tx store.Tx) error {
		if nsGoing {
			// The kernel reclaims the host side with the namespace: not
			// an orphan for reconcile to delete meanwhile.
			if err := markReclaim(tx, s.own(reclaimPrefix), a.HostIf); err != nil {
				return err
			}
		}
		return forget(tx, a)
	})
}

// forget drops an attachment with its leases and host ports.
func forget(tx store.Tx, a *Attachment) error {
	for _, p := range a.Addrs() {
		if string(tx.Get(store.Leases, leaseKey(a.NetworkID, p.Addr()))) == a.key() {
			if err := tx.Delete(store.Leases, leaseKey(a.NetworkID, p.Addr())); err != nil {
				return err
			}
		}
	}
	if err := releasePorts(tx, a); err != nil {
		return err
	}
	if a.MAC != nil && string(tx.Get(store.Meta, macKey(a.NetworkID, a.MAC))) == a.key() {
		if err := tx.Delete(store.Meta, macKey(a.NetworkID, a.MAC)); err != nil {
			return err
		}
	}
	return tx.Delete(store.Endpoints, a.key())
}

// Attachments lists this host's attachments of the owners given (all of
// them when none), those being made or removed left out.
func (s *Service) Attachments(owners ...Owner) ([]Attachment, error) {
	var out []Attachment
	err := s.d.Store.View(func(tx store.Tx) error {
		prefixes := []string{""}
		if len(owners) > 0 {
			prefixes = prefixes[:0]
			for _, o := range owners {
				prefixes = append(prefixes, o.prefix())
			}
		}
		for _, p := range prefixes {
			atts, err := s.ownAttachments(tx, p)
			if err != nil {
				return err
			}
			for _, a := range atts {
				if a.Pending == "" {
					out = append(out, a)
				}
			}
		}
		return nil
	})
	return out, err
}

// reclaimPrefix marks, in Meta, host interfaces of dropped namespaces that
// the kernel is still reclaiming in the background: not orphans to delete.
const reclaimPrefix = "reclaim/"

func markReclaim(tx store.Tx, prefix, hostIf string) error {
	return tx.Put(store.Meta, prefix+hostIf, []byte(time.Now().UTC().Format(time.RFC3339)))
}

func addrOf(a *Attachment) string {
	if ps := a.Addrs(); len(ps) > 0 {
		return ps[0].Addr().String()
	}
	return "endpoint " + ShortID(a.ID)
}
