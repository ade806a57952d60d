package network

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/crash"
	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/store"
)

// SubnetSpec is one --subnet with the --gateway, --ip-range and
// --aux-address that go with it.
type SubnetSpec struct {
	Subnet, Gateway, IPRange string
	AuxAddresses             map[string]string
}

// NetworkSpec is what `network create` asks for.
type NetworkSpec struct {
	Name string
	// ID is the network's id when its caller names it (Docker passes its
	// own); "" makes a new one.
	ID       string
	Driver   string // "" = the first driver registered
	Subnets  []SubnetSpec
	Internal bool
	IPv6     bool
	Options  map[string]string
	Labels   map[string]string
	// Default makes the default network (Name is DefaultNetwork).
	Default bool
}

const (
	pendingCreate = "creating"
	pendingRemove = "removing"
	pendingAttach = "attaching"
	pendingDetach = "detaching"
)

func validID(id string) bool {
	_, err := hex.DecodeString(id)
	return len(id) == 64 && err == nil
}

// NewID is a fresh 64-hex-digit id, as Docker's.
func NewID() string {
	b := make([]byte, 32)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// CreateNetwork validates spec, has the driver make the network, and records
// it. On any error nothing is left behind.
func (s *Service) CreateNetwork(ctx context.Context, spec NetworkSpec) (*Network, error) {
	var n *Network
	err := s.change(ctx, func() error {
		var err error
		n, err = s.createNetwork(ctx, spec)
		return err
	})
	return n, err
}

func (s *Service) createNetwork(ctx context.Context, spec NetworkSpec) (*Network, error) {
	what := fmt.Sprintf("network %q", spec.Name)
	if !ValidName(spec.Name) {
		return nil, errdefs.Field("name", fmt.Sprintf("%s: invalid name: use letters, digits and _ . - (starting with a letter or digit)", spec.Name))
	}
	if Predefined(spec.Name) {
		return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "name", Msg: fmt.Sprintf("%s: the name is reserved for the %s mode", what, spec.Name)}
	}
	kind := spec.Driver
	if kind == "" {
		kind = s.d.Drivers.Names()[0]
	}
	d, err := s.d.Drivers.Get(kind)
	if err != nil {
		return nil, errdefs.Field("driver", fmt.Sprintf("%s: unknown driver %q; ctnet has: %s", what, spec.Driver, strings.Join(s.d.Drivers.Names(), ", ")))
	}
	host, err := s.d.Kernel.HostPrefixes()
	if err != nil {
		return nil, err
	}
	n := &Network{
		Name:     spec.Name,
		ID:       cmp.Or(spec.ID, NewID()),
		Created:  time.Now().UTC(),
		Driver:   kind,
		Internal: spec.Internal,
		IPv6:     spec.IPv6,
		Options:  map[string]string{},
		Labels:   spec.Labels,
		Pending:  pendingCreate,
	}
	for k, v := range spec.Options {
		n.Options[k] = v
	}
	if !validID(n.ID) {
		return nil, errdefs.Field("id", fmt.Sprintf("%s: id %q is not 64 hexadecimal digits", what, n.ID))
	}
	if err := checkServiceOptions(n.Options); err != nil {
		return nil, wrapWhat(what, err)
	}
	if s.clustered() && driver.ScopeOf(d) == driver.ScopeLocal {
		n.Host = s.d.Host
	}
	var others []Network
	if err := s.d.Store.View(func(tx store.Tx) error {
		others, err = s.rivals(tx, n)
		return err
	}); err != nil {
		return nil, err
	}
	for _, o := range others {
		if o.Name == spec.Name {
			return nil, s.exists(what, &o)
		}
	}
	if n.Subnets, err = planSubnets(spec, others, host); err != nil {
		return nil, wrapWhat(what, err)
	}
	dn := n.driverNet()
	dn.Default = spec.Default
	var otherNets []driver.Network
	for _, o := range others {
		otherNets = append(otherNets, o.driverNet())
	}
	if err := d.PlanNetwork(&dn, otherNets); err != nil {
		return nil, wrapWhat(what, err)
	}
	n.Bridge, n.MTU = dn.Device, dn.MTU
	maps.Copy(n.Options, dn.Options)

	// Record the intent, with the name taken, before the kernel work.
	n.PendingHost = s.d.Host
	err = s.d.Store.Update(func(tx store.Tx) error {
		all, err := s.rivals(tx, n)
		if err != nil {
			return err
		}
		for _, o := range all {
			if o.Name == n.Name {
				return s.exists(what, &o)
			}
			if err := claimed(what, d, dn, &o); err != nil {
				return err
			}
			if o.ID == n.ID {
				return &errdefs.Error{Kind: errdefs.Conflict, Field: "id", Msg: fmt.Sprintf("%s: id %s is already network %q's", what, ShortID(n.ID), o.Name)}
			}
			if o.Bridge == n.Bridge {
				return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("%s: bridge %s is already used by network %q", what, n.Bridge, o.Name)}
			}
			for _, sub := range n.Subnets {
				for _, os := range o.Subnets {
					if ipam.Overlaps(sub.Subnet, os.Subnet) {
						return &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: fmt.Sprintf("%s: subnet %s overlaps network %q (%s); pick another with %s", what, sub.Subnet, o.Name, os.Subnet, errdefs.FieldToken)}
					}
				}
			}
		}
		return store.PutJSON(tx, store.Networks, n.key(), n)
	})
	if err != nil {
		return nil, err
	}
	success := false
	defer func() {
		if !success {
			d.DeleteNetwork(ctx, dn)
			s.d.Store.Update(func(tx store.Tx) error { return tx.Delete(store.Networks, n.key()) })
		}
	}()
	if err := d.CreateNetwork(ctx, dn); err != nil {
		return nil, wrapWhat(what, err)
	}
	crash.Point("network-create")
	n.Pending, n.PendingHost = "", ""
	if err := s.d.Store.Update(func(tx store.Tx) error { return store.PutJSON(tx, store.Networks, n.key(), n) }); err != nil {
		success = outcomeUnknown(err) // made or not: reconcile tells, undoing would guess
		return nil, err
	}
	success = true
	return n, nil
}

func exists(what string, n *Network) error {
	return &errdefs.Error{Kind: errdefs.Conflict, Field: "name", Msg: fmt.Sprintf("network with name %s already exists (id %s); pick another name or remove it with `ctnet network rm %s`", n.Name, ShortID(n.ID), n.Name)}
}

// wrapWhat prefixes err with the object it is about, keeping its kind.
func wrapWhat(what string, err error) error {
	var de *errdefs.Error
	if errors.As(err, &de) && !strings.HasPrefix(de.Msg, what) {
		c := *de
		c.Msg = what + ": " + de.Msg
		return &c
	}
	if de != nil {
		return err
	}
	return fmt.Errorf("%s: %w", what, err)
}

// planSubnets validates the requested subnets, or picks a free one from the
// default pools, avoiding every other network and every host address and route.
func planSubnets(spec NetworkSpec, others []Network, host []netip.Prefix) ([]Subnet, error) {
	taken := func(p netip.Prefix) error {
		for _, o := range others {
			for _, s := range o.Subnets {
				if ipam.Overlaps(p, s.Subnet) {
					return &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: fmt.Sprintf("subnet %s overlaps network %q (%s); pick another with %s", p, o.Name, s.Subnet, errdefs.FieldToken)}
				}
			}
		}
		for _, q := range host {
			if ipam.Overlaps(p, q) {
				return &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: fmt.Sprintf("subnet %s overlaps %s, a route or address on the host; pick another with %s", p, q, errdefs.FieldToken)}
			}
		}
		return nil
	}

	var out []Subnet
	var v4, v6 int
	for _, s := range spec.Subnets {
		sub, err := ipam.NewSubnet(s.Subnet, s.Gateway, s.IPRange, s.AuxAddresses)
		if err != nil {
			return nil, &errdefs.Error{Kind: errdefs.Invalid, Field: "subnet", Msg: err.Error(), Err: err}
		}
		if err := taken(sub.Prefix); err != nil {
			return nil, err
		}
		for _, prev := range out {
			if ipam.Overlaps(prev.Subnet, sub.Prefix) {
				return nil, errdefs.Field("subnet", fmt.Sprintf("subnets %s and %s overlap", prev.Subnet, sub.Prefix))
			}
		}
		if sub.Prefix.Addr().Is4() {
			v4++
		} else {
			v6++
		}
		out = append(out, fromIPAM(sub))
	}
	if v6 > 0 && !spec.IPv6 {
		return nil, errdefs.Field("subnet", "an IPv6 --subnet needs --ipv6")
	}
	if spec.IPv6 && v6 == 0 {
		return nil, errdefs.Field("ipv6", "--ipv6 needs an IPv6 --subnet (for example --subnet fd00:1::/64)")
	}
	if v4 == 0 {
		used := slices.Clone(host)
		for _, o := range others {
			for _, s := range o.Subnets {
				used = append(used, s.Subnet)
			}
		}
		p, err := ipam.PickSubnet(ipam.DefaultPools(), used)
		if err != nil {
			return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: err.Error(), Err: err}
		}
		sub, err := ipam.NewSubnet(p.String(), "", "", nil)
		if err != nil {
			return nil, err
		}
		out = append([]Subnet{fromIPAM(sub)}, out...)
	}
	return out, nil
}

// driverNet is the network as its driver sees it.
func (n *Network) driverNet() driver.Network {
	d := driver.Network{
		ID: n.ID, Name: n.Name, Default: n.Name == DefaultNetwork, Device: n.Bridge, MTU: n.MTU,
		Internal: n.Internal, IPv6: n.IPv6, Options: map[string]string{},
	}
	for k, v := range n.Options {
		if !serviceOptions[k] {
			d.Options[k] = v // the service's own options are not the driver's
		}
	}
	for _, s := range n.Subnets {
		d.Subnets = append(d.Subnets, driver.Subnet{Prefix: s.Subnet, Gateway: s.Gateway})
	}
	return d
}

// Options of the service itself, for every driver; the rest are the
// driver's.
const (
	// OptDNSForward lets an --internal network's containers have names
	// outside it resolved through the host (off: CVE-2024-29018).
	OptDNSForward = "ctnet.internal.dns_forward"
)

var serviceOptions = map[string]bool{OptDNSForward: true}

func checkServiceOptions(opts map[string]string) error {
	if v, ok := opts[OptDNSForward]; ok {
		if _, err := strconv.ParseBool(v); err != nil {
			return errdefs.Field("option:"+OptDNSForward, fmt.Sprintf("option %s=%q: want true or false", OptDNSForward, v))
		}
	}
	return nil
}

func (n *Network) dnsForward() bool {
	b, _ := strconv.ParseBool(n.Options[OptDNSForward])
	return b
}

// findNetwork looks a network up by name, full id or unique id prefix; one
// being created or removed is not found.
func (s *Service) findNetwork(tx store.Tx, ref string) (*Network, error) {
	keys := []string{ref}
	if s.clustered() {
		keys = []string{s.own(ref), ref} // this host's local network, then a global one
	}
	for _, k := range keys {
		if n, err := store.GetJSON[Network](tx, store.Networks, k); n != nil || err != nil {
			if n != nil && n.Pending != "" {
				return nil, notFound("network", ref, "list networks with `ctnet network ls`")
			}
			return n, err
		}
	}
	all, err := s.networks(tx, false)
	if err != nil {
		return nil, err
	}
	var found *Network
	for i := range all {
		if all[i].Pending == "" && isPrefixOf(ref, all[i].ID) {
			if found != nil {
				return nil, errdefs.Field("network", fmt.Sprintf("network id prefix %q is ambiguous; give more characters", ref))
			}
			found = &all[i]
		}
	}
	if found == nil {
		return nil, notFound("network", ref, "list networks with `ctnet network ls`")
	}
	return found, nil
}

// notFound says it in Docker's words ("No such network: web"), which
// scripts grep, then what to do.
func notFound(kind, ref, hint string) error {
	return errdefs.New(errdefs.NotFound, fmt.Sprintf("No such %s: %s; %s", kind, ref, hint))
}

// IsNotFound reports whether err says an object does not exist.
func IsNotFound(err error) bool { return errdefs.Is(err, errdefs.NotFound) }

// RemoveNetworks removes networks by name or id; each one must have no
// attachments. It goes on past failures and reports them all.
func (s *Service) RemoveNetworks(ctx context.Context, refs ...string) (removed []string, err error) {
	var errs []error
	for _, ref := range refs {
		err := s.change(ctx, func() error { return s.removeNetwork(ctx, ref) })
		if err != nil {
			errs = append(errs, err)
			continue
		}
		removed = append(removed, ref)
	}
	return removed, errors.Join(errs...)
}

func (s *Service) removeNetwork(ctx context.Context, ref string) error {
	if kind, ok := predefined[ref]; ok {
		return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("%s is a pre-defined network and cannot be removed (it is the %s mode of containers)", ref, kind)}
	}
	var n *Network
	err := s.d.Store.Update(func(tx store.Tx) error {
		var err error
		if n, err = s.findNetwork(tx, ref); err != nil {
			return err
		}
		if n.Name == DefaultNetwork {
			return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("%s is a pre-defined network and cannot be removed (it is the default network)", n.Name)}
		}
		atts, err := store.ListJSON[Attachment](tx, store.Endpoints, "")
		if err != nil {
			return err
		}
		var users []string
		for _, a := range atts {
			if a.NetworkID == n.ID {
				users = append(users, s.userOf(tx, &a))
			}
		}
		if len(users) > 0 {
			return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("network %q has active endpoints (%s); disconnect them or remove their containers first", n.Name, strings.Join(users, ", "))}
		}
		n.Pending, n.PendingHost = pendingRemove, s.d.Host
		return store.PutJSON(tx, store.Networks, n.key(), n)
	})
	if err != nil {
		return err
	}
	crash.Point("network-rm")
	return s.finishRemove(ctx, n)
}

// finishRemove has the driver delete a network marked for removal, then
// forgets it.
func (s *Service) finishRemove(ctx context.Context, n *Network) error {
	d, err := s.d.Drivers.Get(n.Driver)
	if err != nil {
		return fmt.Errorf("network %q: driver %s: %w", n.Name, n.Driver, err)
	}
	if err := d.DeleteNetwork(ctx, n.driverNet()); err != nil {
		// Still there: take the mark back (a crashed creation stays marked
		// for the next reconcile).
		if n.Pending == pendingRemove {
			s.d.Store.Update(func(tx store.Tx) error {
				n.Pending, n.PendingHost = "", ""
				return store.PutJSON(tx, store.Networks, n.key(), n)
			})
		}
		return fmt.Errorf("network %q: %w", n.Name, err)
	}
	return s.d.Store.Update(func(tx store.Tx) error { return tx.Delete(store.Networks, n.key()) })
}

// Networks lists every network with its attachments, default network first,
// then by name, then the predefined modes.
func (s *Service) Networks(ctx context.Context) ([]NetworkInfo, error) {
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	var out []NetworkInfo
	err := s.d.Store.View(func(tx store.Tx) error {
		nets, err := s.networks(tx, false)
		if err != nil {
			return err
		}
		atts, err := store.ListJSON[Attachment](tx, store.Endpoints, "")
		if err != nil {
			return err
		}
		for _, n := range nets {
			if n.Pending != "" {
				continue
			}
			info := NetworkInfo{Network: n, Scope: s.scope(&n)}
			for _, a := range atts {
				if a.NetworkID == n.ID && a.Pending == "" {
					info.Attachments = append(info.Attachments, a)
				}
			}
			if err := s.addHosts(tx, &info); err != nil {
				return err
			}
			out = append(out, info)
		}
		return nil
	})
	slices.SortStableFunc(out, func(a, b NetworkInfo) int {
		if (a.Name == DefaultNetwork) != (b.Name == DefaultNetwork) {
			if a.Name == DefaultNetwork {
				return -1
			}
			return 1
		}
		return strings.Compare(a.Name, b.Name)
	})
	for _, name := range []string{"host", "none"} {
		out = append(out, predefinedNetwork(name))
	}
	return out, err
}

// Network returns one network by name, id or unique id prefix.
func (s *Service) Network(ctx context.Context, ref string) (*NetworkInfo, error) {
	if err := s.prepare(ctx); err != nil {
		return nil, err
	}
	var info *NetworkInfo
	err := s.d.Store.View(func(tx store.Tx) error {
		n, err := s.findNetwork(tx, ref)
		if err != nil {
			return err
		}
		info = &NetworkInfo{Network: *n, Scope: s.scope(n)}
		atts, err := store.ListJSON[Attachment](tx, store.Endpoints, "")
		for _, a := range atts {
			if a.NetworkID == n.ID && a.Pending == "" {
				info.Attachments = append(info.Attachments, a)
			}
		}
		if err != nil {
			return err
		}
		return s.addHosts(tx, info)
	})
	if IsNotFound(err) {
		for _, name := range []string{"host", "none"} {
			if p := predefinedNetwork(name); ref == name || isPrefixOf(ref, p.ID) {
				return &p, nil
			}
		}
	}
	return info, err
}

// predefinedNetwork is the host or none mode, shown as Docker shows them.
func predefinedNetwork(name string) NetworkInfo {
	sum := sha256.Sum256([]byte("ctnet predefined network " + name))
	return NetworkInfo{Network: Network{Name: name, ID: hex.EncodeToString(sum[:]), Driver: predefined[name]}, Scope: driver.ScopeLocal}
}
