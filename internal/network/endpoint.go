package network

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

// Endpoints in steps, for a caller that moves the interface into the
// namespace itself (Docker's remote driver protocol): CreateEndpoint records
// the endpoint with its addresses and touches no kernel; JoinEndpoint has the
// driver make the interface with both ends in the host (the caller moves the
// inner end); PublishEndpoint and UnpublishEndpoint program its ports;
// LeaveEndpoint removes it from the kernel; DeleteEndpoint forgets it. Each
// step is idempotent, so a caller that retries after a restart of its
// server changes nothing twice. The attachment has no namespace path: the
// caller, not ctnet, knows where its inner end went and says when it goes,
// so reconcile never releases it for a namespace that is gone.

// pendingCreated marks an endpoint recorded but not in the kernel (before
// Join, after Leave); it is hidden from listings like one being made.
const pendingCreated = "created"

// EndpointSpec is one endpoint to record.
type EndpointSpec struct {
	Network string // name or id
	Owner   Owner  // who names it (Docker: its endpoint id, also the attachment's id)
	ID      string // "" = a new one
	Name    string // for people; default "endpoint <short id>"
	// Addrs are the addresses the caller's IPAM chose (one per family the
	// network has); none lets ctnet choose from its leases.
	Addrs  []netip.Addr
	MAC    string // "" = derived from the IPv4 address
	Labels map[string]string
}

// CreateEndpoint records an endpoint: its addresses (leased), its MAC and its
// host interface's name. The kernel is not touched. Recording the same owner
// on the same network again returns the record made before.
func (s *Service) CreateEndpoint(ctx context.Context, spec EndpointSpec) (*Attachment, error) {
	var a *Attachment
	err := s.change(ctx, func() error {
		var err error
		a, err = s.createEndpoint(ctx, spec)
		return err
	})
	return a, err
}

func (s *Service) createEndpoint(ctx context.Context, spec EndpointSpec) (*Attachment, error) {
	n, d, err := s.networkDriver(spec.Network)
	if err != nil {
		return nil, err
	}
	if _, ok := d.(driver.HostJoiner); !ok {
		return nil, errdefs.Field("driver", fmt.Sprintf("network %q: its driver %s cannot make an interface for another to move into place", n.Name, n.Driver))
	}
	what := fmt.Sprintf("endpoint %s on network %q", ShortID(spec.ID), n.Name)
	if spec.ID == "" {
		spec.ID = NewID()
	} else if len(spec.ID) < 12 {
		return nil, errdefs.Field("endpoint", fmt.Sprintf("%s: id %q is too short (want at least 12 characters)", what, spec.ID))
	}
	if spec.Owner == (Owner{}) {
		return nil, errdefs.Field("endpoint", what+": no owner")
	}
	var mac net.HardwareAddr
	if spec.MAC != "" {
		mac, err = net.ParseMAC(spec.MAC)
		if err != nil || len(mac) != 6 || mac[0]&1 == 1 {
			return nil, errdefs.Field("mac-address", fmt.Sprintf("%s: %s %q is not a unicast Ethernet address", what, errdefs.FieldToken, spec.MAC))
		}
	}
	static := map[bool]netip.Addr{}
	for _, ip := range spec.Addrs {
		if plan, ok, err := subnetFor(n, ip.Is4(), ip); err != nil {
			return nil, wrapWhat(what, err)
		} else if ok && plan.Prefix.Contains(ip) {
			if err := plan.Check(ip); err != nil {
				return nil, &errdefs.Error{Kind: errdefs.Invalid, Field: ipField(ip), Msg: fmt.Sprintf("%s: %v", what, err), Err: err}
			}
		}
		if _, dup := static[ip.Is4()]; dup {
			return nil, errdefs.Field(ipField(ip), fmt.Sprintf("%s: more than one IPv%s address given", what, map[bool]string{true: "4", false: "6"}[ip.Is4()]))
		}
		static[ip.Is4()] = ip
	}
	var alloc Allocator = Builtin{}
	if len(spec.Addrs) > 0 {
		alloc = Given(spec.Addrs)
	}
	a := &Attachment{
		ID: spec.ID, Owner: spec.Owner, Name: spec.Name, Labels: spec.Labels, Host: s.d.Host,
		Created: time.Now().UTC(), Pending: pendingCreated,
	}
	if a.Name == "" {
		a.Name = "endpoint " + ShortID(a.ID)
	}
	if err := s.evictStale(ctx, n, spec); err != nil {
		return nil, wrapWhat(what, err)
	}
	ep := driver.Endpoint{ID: a.ID}
	if err := d.CreateEndpoint(n.driverNet(), &ep); err != nil {
		return nil, wrapWhat(what, err)
	}
	a.HostIf = ep.HostIf
	var out *Attachment
	err = s.d.Store.Update(func(tx store.Tx) error {
		out = nil
		now, err := s.findNetwork(tx, n.ID)
		if err != nil {
			return err
		}
		mine, err := s.ownAttachments(tx, a.Owner.prefix())
		if err != nil {
			return err
		}
		if len(mine) > 0 { // recorded before: the caller asks again
			if o := mine[0]; o.NetworkID != now.ID {
				return &errdefs.Error{Kind: errdefs.Conflict, Field: "endpoint", Msg: fmt.Sprintf("%s: the endpoint is already on network %q", what, o.Network)}
			}
			out = &mine[0]
			return nil
		}
		b := *a
		b.Network, b.NetworkID = now.Name, now.ID
		if err := s.allocate(tx, now, &b, static, alloc); err != nil {
			return wrapWhat(what, err)
		}
		if err := s.pickMAC(tx, now, &b, mac); err != nil {
			return wrapWhat(what, err)
		}
		out = &b
		return store.PutJSON(tx, store.Endpoints, b.key(), &b)
	})
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Endpoint returns the owner's attachment on a network ("" = its only one),
// in whatever step it is.
func (s *Service) Endpoint(owner Owner, network string) (*Attachment, error) {
	var a *Attachment
	err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		a, err = s.ownerEndpoint(tx, owner, network)
		return err
	})
	return a, err
}

// ownerEndpoint finds the owner's attachment; nil, nil when it has none.
func (s *Service) ownerEndpoint(tx store.Tx, owner Owner, network string) (*Attachment, error) {
	var netID string
	if network != "" {
		n, err := s.findNetwork(tx, network)
		if IsNotFound(err) {
			return nil, nil
		}
		if err != nil {
			return nil, err
		}
		netID = n.ID
	}
	atts, err := s.ownAttachments(tx, owner.prefix())
	if err != nil {
		return nil, err
	}
	for _, a := range atts {
		if netID == "" || a.NetworkID == netID {
			return &a, nil
		}
	}
	return nil, nil
}

func endpointNotFound(owner Owner) error {
	return errdefs.New(errdefs.NotFound, fmt.Sprintf("endpoint %s not found (never created, or deleted); see `ctnet network inspect`", ShortID(owner.ID)))
}

// JoinResult is what a caller needs to finish a join itself.
type JoinResult struct {
	Attachment
	// Gateways are the default routes the inner end needs (none on an
	// internal network).
	Gateways []netip.Addr
	MTU      int
}

// JoinEndpoint has the driver make the owner's endpoint in the kernel with its
// inner end in the host namespace under the name peer, unconfigured, for the
// caller to move into sandbox (recorded for people: the namespace's path).
// Joining a joined endpoint again changes nothing.
func (s *Service) JoinEndpoint(ctx context.Context, owner Owner, network, peer, sandbox string) (*JoinResult, error) {
	var res *JoinResult
	err := s.change(ctx, func() error {
		var err error
		res, err = s.joinEndpoint(ctx, owner, network, peer, sandbox)
		return err
	})
	return res, err
}

func (s *Service) joinEndpoint(ctx context.Context, owner Owner, network, peer, sandbox string) (*JoinResult, error) {
	var a *Attachment
	var n *Network
	joined := false
	err := s.d.Store.Update(func(tx store.Tx) error {
		var err error
		if a, err = s.ownerEndpoint(tx, owner, network); err != nil {
			return err
		}
		if a == nil {
			return endpointNotFound(owner)
		}
		if n, err = s.findNetwork(tx, a.NetworkID); err != nil {
			return err
		}
		switch a.Pending {
		case "":
			joined = true
			return nil
		case pendingCreated:
		default:
			return &errdefs.Error{Kind: errdefs.Unavailable, Msg: fmt.Sprintf("endpoint %s is being %s; try again", ShortID(a.ID), a.Pending)}
		}
		a.Pending = pendingAttach
		if sandbox != "" {
			a.Name = sandbox
		}
		return store.PutJSON(tx, store.Endpoints, a.key(), a)
	})
	if err != nil {
		return nil, err
	}
	res := &JoinResult{Attachment: *a, Gateways: a.endpoint(n).Gateways, MTU: n.MTU}
	if joined {
		return res, nil
	}
	d, err := s.d.Drivers.Get(n.Driver)
	if err != nil {
		return nil, fmt.Errorf("network %q: driver %s: %w", n.Name, n.Driver, err)
	}
	hj, ok := d.(driver.HostJoiner)
	if !ok {
		return nil, fmt.Errorf("network %q: driver %s cannot join this way", n.Name, n.Driver)
	}
	dn, ep := n.driverNet(), a.endpoint(n)
	success := false
	defer func() {
		if !success {
			d.Leave(ctx, dn, ep, false)
			s.setPending(a, pendingCreated)
		}
	}()
	if err := hj.JoinHost(ctx, dn, ep, peer); err != nil {
		return nil, fmt.Errorf("join endpoint %s to network %q: %w", ShortID(a.ID), n.Name, err)
	}
	if err := s.setPending(a, ""); err != nil {
		return nil, err
	}
	success = true
	res.Pending = ""
	return res, nil
}

// setPending records a step of an endpoint.
func (s *Service) setPending(a *Attachment, pending string) error {
	return s.d.Store.Update(func(tx store.Tx) error {
		now, err := store.GetJSON[Attachment](tx, store.Endpoints, a.key())
		if err != nil || now == nil {
			return err
		}
		now.Pending = pending
		if pending == pendingCreated {
			if err := releasePorts(tx, now); err != nil {
				return err
			}
			now.Ports = nil
		}
		return store.PutJSON(tx, store.Endpoints, a.key(), now)
	})
}

// PublishEndpoint publishes ports for a joined endpoint: host ports chosen
// for open mappings, conflicts refused before anything changes, elements of
// the driver's maps. An endpoint that publishes already keeps what it has.
func (s *Service) PublishEndpoint(ctx context.Context, owner Owner, network string, ports []portspec.Mapping) (*Attachment, error) {
	var a *Attachment
	err := s.change(ctx, func() error {
		var err error
		a, err = s.publishEndpoint(ctx, owner, network, ports)
		return err
	})
	return a, err
}

func (s *Service) publishEndpoint(ctx context.Context, owner Owner, network string, ports []portspec.Mapping) (*Attachment, error) {
	var a *Attachment
	var n *Network
	err := s.d.Store.Update(func(tx store.Tx) error {
		var err error
		if a, err = s.ownerEndpoint(tx, owner, network); err != nil {
			return err
		}
		if a == nil {
			return endpointNotFound(owner)
		}
		if a.Pending != "" {
			return &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("endpoint %s is not joined (it is %s); join it before publishing ports", ShortID(a.ID), a.Pending)}
		}
		if len(a.Ports) > 0 || len(ports) == 0 {
			return nil
		}
		if n, err = s.findNetwork(tx, a.NetworkID); err != nil {
			return err
		}
		what := fmt.Sprintf("endpoint %s on network %q", ShortID(a.ID), n.Name)
		ms, err := s.reservePorts(tx, n, a, ports, false)
		if err != nil {
			return wrapWhat(what, err)
		}
		b := *a
		b.Ports = ms
		a = &b
		return store.PutJSON(tx, store.Endpoints, a.key(), a)
	})
	if err != nil || n == nil {
		return a, err
	}
	d, err := s.d.Drivers.Get(n.Driver)
	if err == nil {
		err = d.Publish(ctx, n.driverNet(), a.endpoint(n))
	}
	var w *driver.Warning
	if errors.As(err, &w) {
		s.log("warning: %s: %v", a.Describe(), w.Err)
		err = nil
	}
	if err != nil {
		return nil, errors.Join(fmt.Errorf("%s: %w", a.Describe(), err), s.setPorts(a, nil))
	}
	return a, nil
}

// setPorts takes back an endpoint's ports in the store (after they were
// unpublished, or failed to be).
func (s *Service) setPorts(a *Attachment, ports []portspec.Mapping) error {
	return s.d.Store.Update(func(tx store.Tx) error {
		now, err := store.GetJSON[Attachment](tx, store.Endpoints, a.key())
		if err != nil || now == nil {
			return err
		}
		if err := releasePorts(tx, now); err != nil {
			return err
		}
		now.Ports = ports
		return store.PutJSON(tx, store.Endpoints, a.key(), now)
	})
}

// UnpublishEndpoint removes the endpoint's published ports; one with none (or
// none at all) is not an error.
func (s *Service) UnpublishEndpoint(ctx context.Context, owner Owner, network string) error {
	return s.change(ctx, func() error {
		a, n, err := s.ownerNetwork(owner, network)
		if err != nil || a == nil || len(a.Ports) == 0 {
			return err
		}
		d, err := s.d.Drivers.Get(n.Driver)
		if err != nil {
			return err
		}
		if err := d.Unpublish(ctx, n.driverNet(), a.endpoint(n)); err != nil {
			return fmt.Errorf("%s: %w", a.Describe(), err)
		}
		return s.setPorts(a, nil)
	})
}

func (s *Service) ownerNetwork(owner Owner, network string) (*Attachment, *Network, error) {
	var a *Attachment
	var n *Network
	err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		if a, err = s.ownerEndpoint(tx, owner, network); err != nil || a == nil {
			return err
		}
		n, err = s.findNetwork(tx, a.NetworkID)
		return err
	})
	return a, n, err
}

// LeaveEndpoint removes the owner's endpoint from the kernel (its ports, its
// interface, whichever namespace holds its inner end now) and keeps its
// record and addresses. An endpoint not joined, or unknown, is not an error.
func (s *Service) LeaveEndpoint(ctx context.Context, owner Owner, network string) error {
	return s.change(ctx, func() error { return s.leaveEndpoint(ctx, owner, network) })
}

func (s *Service) leaveEndpoint(ctx context.Context, owner Owner, network string) error {
	var a *Attachment
	var n *Network
	err := s.d.Store.Update(func(tx store.Tx) error {
		var err error
		a, n = nil, nil
		now, err := s.ownerEndpoint(tx, owner, network)
		if err != nil || now == nil || now.Pending == pendingCreated {
			return err
		}
		if now.Pending != "" {
			return &errdefs.Error{Kind: errdefs.Unavailable, Msg: fmt.Sprintf("endpoint %s is being %s; try again", ShortID(now.ID), now.Pending)}
		}
		if n, err = s.findNetwork(tx, now.NetworkID); err != nil {
			return err
		}
		now.Pending = pendingDetach
		a = now
		return store.PutJSON(tx, store.Endpoints, a.key(), a)
	})
	if err != nil || a == nil {
		return err
	}
	d, err := s.d.Drivers.Get(n.Driver)
	if err != nil {
		return errors.Join(err, s.setPending(a, ""))
	}
	dn, ep := n.driverNet(), a.endpoint(n)
	if len(a.Ports) > 0 {
		if err := d.Unpublish(ctx, dn, ep); err != nil {
			return errors.Join(fmt.Errorf("%s: %w", a.Describe(), err), s.setPending(a, ""))
		}
	}
	if err := d.Leave(ctx, dn, ep, false); err != nil {
		if len(a.Ports) > 0 {
			d.Publish(ctx, dn, ep)
		}
		return errors.Join(fmt.Errorf("%s: %w", a.Describe(), err), s.setPending(a, ""))
	}
	return s.setPending(a, pendingCreated)
}

// DeleteEndpoint forgets the owner's endpoint with its leases and host ports,
// leaving the kernel first if it is still joined. An unknown endpoint is not
// an error.
func (s *Service) DeleteEndpoint(ctx context.Context, owner Owner, network string) error {
	return s.change(ctx, func() error {
		if err := s.leaveEndpoint(ctx, owner, network); err != nil {
			return err
		}
		return s.d.Store.Update(func(tx store.Tx) error {
			a, err := s.ownerEndpoint(tx, owner, network)
			if err != nil || a == nil {
				return err
			}
			if a.Pending != pendingCreated {
				return &errdefs.Error{Kind: errdefs.Unavailable, Msg: fmt.Sprintf("endpoint %s is being joined again; try again", ShortID(a.ID))}
			}
			return forget(tx, a)
		})
	})
}

// evictStale removes the endpoints that hold addresses the caller's IPAM
// hands out again: endpoints of the same kind of owner on the network, whose
// address no pool of ctnet's reserved. The caller's IPAM is the truth about
// its own endpoints, so those were dropped without a word to ctnet (dockerd,
// started again without live-restore, forgets the endpoints of containers
// that died with it and asks no driver that is not loaded yet).
func (s *Service) evictStale(ctx context.Context, n *Network, spec EndpointSpec) error {
	var stale []Attachment
	err := s.d.Store.View(func(tx store.Tx) error {
		for _, ip := range spec.Addrs {
			holder := string(tx.Get(store.Leases, leaseKey(n.ID, ip)))
			if !heldBy(holder, spec.Owner.Kind) || strings.HasPrefix(holder, s.own(spec.Owner.prefix())) {
				continue
			}
			reserved := false
			for _, sub := range n.Subnets {
				reserved = reserved || (sub.Subnet.Contains(ip) && tx.Get(reservedBucket, reservedKey(sub.Subnet, ip)) != nil)
			}
			if reserved {
				continue
			}
			if o, err := store.GetJSON[Attachment](tx, store.Endpoints, holder); err != nil {
				return err
			} else if o != nil && o.NetworkID == n.ID {
				stale = append(stale, *o)
			}
		}
		return nil
	})
	for _, o := range stale {
		if err == nil {
			err = s.leaveEndpoint(ctx, o.Owner, n.ID)
		}
		if err == nil {
			err = s.d.Store.Update(func(tx store.Tx) error {
				now, err := store.GetJSON[Attachment](tx, store.Endpoints, o.key())
				if err != nil || now == nil {
					return err
				}
				return forget(tx, now)
			})
		}
		if err == nil {
			s.log("removed endpoint %s of %s on network %q: its address %s was handed out again by its owner's IPAM", ShortID(o.ID), o.Name, n.Name, addrOf(&o))
		}
	}
	return err
}

// NetworkEndpoints lists every attachment of a network, in whatever step
// (those being made or removed, and endpoints recorded but not joined).
func (s *Service) NetworkEndpoints(ref string) ([]Attachment, error) {
	var out []Attachment
	err := s.d.Store.View(func(tx store.Tx) error {
		n, err := s.findNetwork(tx, ref)
		if err != nil {
			return err
		}
		atts, err := store.ListJSON[Attachment](tx, store.Endpoints, "")
		for _, a := range atts {
			if a.NetworkID == n.ID {
				out = append(out, a)
			}
		}
		return err
	})
	return out, err
}
