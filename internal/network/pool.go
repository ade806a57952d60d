package network

import (
	"context"
	"fmt"
	"net/netip"
	"time"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/store"
)

// Address pools, for a caller whose own IPAM protocol hands out subnets and
// addresses before its networks and endpoints exist (Docker's IPAM driver:
// RequestPool and RequestAddress come before CreateNetwork and
// CreateEndpoint). A pool is a subnet kept off every other network and pool;
// its id is the subnet. Once a network of the same subnet exists, the pool's
// addresses come from that network's leases (free of its endpoints, and of
// the pool's own reservations), so `network inspect` and the IPAM never
// disagree; a pool that no ctnet network takes (another driver's) has only
// its reservations. Pools and reservations are runtime facts: after a reboot
// the caller asks for them again (Docker does, for an IPAM that says it
// needs the replay).

const (
	poolsBucket    = "pools"       // subnet -> Pool
	reservedBucket = "pool-leases" // "<subnet> <addr>" -> time reserved
)

// Pool is an address pool.
type Pool struct {
	ID      string // the subnet, as text
	Prefix  netip.Prefix
	Range   netip.Prefix `json:",omitzero"` // addresses are handed out of it only
	Gateway netip.Addr   `json:",omitzero"`
	Created time.Time
}

// PoolSpec asks for a pool.
type PoolSpec struct {
	Pool    string // the subnet; "" = a free one (IPv4 only)
	SubPool string // the range addresses come from (--ip-range)
	V6      bool
}

func reservedKey(p netip.Prefix, a netip.Addr) string { return p.String() + " " + a.String() }

// RequestPool reserves a subnet: the one asked for, if it overlaps no other
// network, pool or host route, or a free one of Docker's default pools.
// Asking again for the subnet of a pool, or of a network, that exists returns
// it (a caller replaying its requests after a restart).
func (s *Service) RequestPool(ctx context.Context, spec PoolSpec) (*Pool, error) {
	var out *Pool
	err := s.change(ctx, func() error {
		host, err := s.d.Kernel.HostPrefixes()
		if err != nil {
			return err
		}
		return s.d.Store.Update(func(tx store.Tx) error {
			var err error
			out, err = requestPool(tx, spec, host)
			return err
		})
	})
	return out, err
}

func requestPool(tx store.Tx, spec PoolSpec, host []netip.Prefix) (*Pool, error) {
	nets, err := store.ListJSON[Network](tx, store.Networks, "")
	if err != nil {
		return nil, err
	}
	pools, err := store.ListJSON[Pool](tx, poolsBucket, "")
	if err != nil {
		return nil, err
	}
	mine := func(p netip.Prefix) bool { // a network's own route
		for _, n := range nets {
			for _, sub := range n.Subnets {
				if sub.Subnet == p {
					return true
				}
			}
		}
		return false
	}
	var prefix netip.Prefix
	if spec.Pool == "" {
		if spec.V6 {
			return nil, errdefs.Field("subnet", "ctnet's IPAM chooses IPv4 pools only: give the IPv6 one with --subnet (for example --subnet fd00:1::/64)")
		}
		used := []netip.Prefix{}
		for _, q := range host {
			if !mine(q) {
				used = append(used, q)
			}
		}
		for _, n := range nets {
			for _, sub := range n.Subnets {
				used = append(used, sub.Subnet)
			}
		}
		for _, p := range pools {
			used = append(used, p.Prefix)
		}
		if prefix, err = ipam.PickSubnet(ipam.DefaultPools(), used); err != nil {
			return nil, &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: err.Error(), Err: err}
		}
	} else {
		sub, err := ipam.NewSubnet(spec.Pool, "", "", nil)
		if err != nil {
			return nil, &errdefs.Error{Kind: errdefs.Invalid, Field: "subnet", Msg: err.Error(), Err: err}
		}
		prefix = sub.Prefix
		if prefix.Addr().Is4() == spec.V6 {
			return nil, errdefs.Field("subnet", fmt.Sprintf("pool %s is not an IPv%s subnet", prefix, map[bool]string{true: "6", false: "4"}[spec.V6]))
		}
		if old, err := store.GetJSON[Pool](tx, poolsBucket, prefix.String()); err != nil || old != nil {
			return old, err
		}
		if !mine(prefix) {
			if err := poolOverlaps(prefix, nets, pools, host); err != nil {
				return nil, err
			}
		}
	}
	p := &Pool{ID: prefix.String(), Prefix: prefix, Created: time.Now().UTC()}
	if spec.SubPool != "" {
		r, err := ipam.NewSubnet(prefix.String(), "", spec.SubPool, nil)
		if err != nil {
			return nil, &errdefs.Error{Kind: errdefs.Invalid, Field: "ip-range", Msg: err.Error(), Err: err}
		}
		p.Range = r.Range
	}
	return p, store.PutJSON(tx, poolsBucket, p.ID, p)
}

func poolOverlaps(p netip.Prefix, nets []Network, pools []Pool, host []netip.Prefix) error {
	for _, n := range nets {
		for _, sub := range n.Subnets {
			if ipam.Overlaps(p, sub.Subnet) {
				return &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: fmt.Sprintf("pool %s overlaps network %q (%s); pick another with %s", p, n.Name, sub.Subnet, errdefs.FieldToken)}
			}
		}
	}
	for _, o := range pools {
		if ipam.Overlaps(p, o.Prefix) {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: fmt.Sprintf("pool %s overlaps pool %s, already handed out; pick another with %s", p, o.Prefix, errdefs.FieldToken)}
		}
	}
	for _, q := range host {
		if ipam.Overlaps(p, q) {
			return &errdefs.Error{Kind: errdefs.Conflict, Field: "subnet", Msg: fmt.Sprintf("pool %s overlaps %s, a route or address on the host; pick another with %s", p, q, errdefs.FieldToken)}
		}
	}
	return nil
}

// PoolByID returns a pool, from its record or, after a reboot emptied the
// runtime state, from the network that has its subnet.
func (s *Service) PoolByID(id string) (*Pool, error) {
	var p *Pool
	err := s.d.Store.View(func(tx store.Tx) error {
		var err error
		p, _, err = poolOf(tx, id)
		return err
	})
	return p, err
}

// poolOf finds a pool and the network whose leases it shares (nil if none).
func poolOf(tx store.Tx, id string) (*Pool, *Network, error) {
	prefix, err := netip.ParsePrefix(id)
	if err != nil {
		return nil, nil, errdefs.Field("pool", fmt.Sprintf("pool id %q is not one of ctnet's (a subnet)", id))
	}
	p, err := store.GetJSON[Pool](tx, poolsBucket, prefix.String())
	if err != nil {
		return nil, nil, err
	}
	nets, err := store.ListJSON[Network](tx, store.Networks, "")
	if err != nil {
		return nil, nil, err
	}
	for i := range nets {
		for _, sub := range nets[i].Subnets {
			if sub.Subnet != prefix || nets[i].Pending != "" {
				continue
			}
			if p == nil {
				p = &Pool{ID: prefix.String(), Prefix: prefix, Range: sub.IPRange, Gateway: sub.Gateway}
			}
			return p, &nets[i], nil
		}
	}
	if p == nil {
		return nil, nil, errdefs.New(errdefs.NotFound, fmt.Sprintf("pool %s not found (released, or lost with a reboot); request it again", id))
	}
	return p, nil, nil
}

// ReleasePool gives a pool's subnet back, with its reservations; the leases
// of a network with that subnet stay the network's. An unknown pool is not
// an error.
func (s *Service) ReleasePool(ctx context.Context, id string) error {
	return s.change(ctx, func() error {
		return s.d.Store.Update(func(tx store.Tx) error {
			prefix, err := netip.ParsePrefix(id)
			if err != nil {
				return nil
			}
			var doomed []string
			tx.ForEach(reservedBucket, prefix.String()+" ", func(k string, _ []byte) error {
				doomed = append(doomed, k)
				return nil
			})
			for _, k := range doomed {
				if err := tx.Delete(reservedBucket, k); err != nil {
					return err
				}
			}
			if err := tx.Delete(store.Meta, poolLastKey(prefix)); err != nil {
				return err
			}
			return tx.Delete(poolsBucket, prefix.String())
		})
	})
}

func poolLastKey(p netip.Prefix) string { return "pool-last/" + p.String() }

// RequestAddress reserves an address of a pool: want if given (a reservation
// already held for it is the caller's own, replayed), else the next free one
// after the last handed out. The gateway is the one asked for, or the
// subnet's first address (the network's, when one has the subnet); it is
// kept off the pool's other addresses but not reserved.
func (s *Service) RequestAddress(ctx context.Context, poolID string, want netip.Addr, gateway bool) (netip.Prefix, error) {
	var out netip.Prefix
	err := s.change(ctx, func() error {
		return s.d.Store.Update(func(tx store.Tx) error {
			var err error
			out, err = requestAddress(tx, poolID, want, gateway)
			return err
		})
	})
	return out, err
}

func requestAddress(tx store.Tx, poolID string, want netip.Addr, gateway bool) (netip.Prefix, error) {
	p, n, err := poolOf(tx, poolID)
	if err != nil {
		return netip.Prefix{}, err
	}
	if want.IsValid() && !p.Prefix.Contains(want) {
		return netip.Prefix{}, errdefs.Field(ipField(want), fmt.Sprintf("address %s is outside pool %s", want, p.Prefix))
	}
	if gateway {
		gw := want
		if n != nil && !gw.IsValid() {
			gw = p.Gateway
		}
		sub, err := ipam.NewSubnet(p.Prefix.String(), addrText(gw), "", nil)
		if err != nil {
			return netip.Prefix{}, &errdefs.Error{Kind: errdefs.Invalid, Field: "gateway", Msg: err.Error(), Err: err}
		}
		if n == nil {
			p.Gateway = sub.Gateway
			if err := store.PutJSON(tx, poolsBucket, p.ID, p); err != nil {
				return netip.Prefix{}, err
			}
		}
		return netip.PrefixFrom(sub.Gateway, p.Prefix.Bits()), nil
	}
	sub, err := ipam.NewSubnet(p.Prefix.String(), addrText(p.Gateway), prefixText(p.Range), nil)
	if err != nil {
		return netip.Prefix{}, err
	}
	if n != nil {
		for _, s := range n.Subnets {
			if s.Subnet == p.Prefix {
				if sub, err = s.plan(); err != nil {
					return netip.Prefix{}, err
				}
			}
		}
	}
	used := func(a netip.Addr) bool {
		return tx.Get(reservedBucket, reservedKey(p.Prefix, a)) != nil || (n != nil && tx.Get(store.Leases, leaseKey(n.ID, a)) != nil)
	}
	a := want
	if a.IsValid() {
		if err := sub.Check(a); err != nil {
			return netip.Prefix{}, &errdefs.Error{Kind: errdefs.Invalid, Field: ipField(a), Msg: err.Error(), Err: err}
		}
		if tx.Get(reservedBucket, reservedKey(p.Prefix, a)) == nil && n != nil {
			if holder := tx.Get(store.Leases, leaseKey(n.ID, a)); holder != nil && !heldBy(string(holder), OwnerDocker) {
				return netip.Prefix{}, inUse(tx, n, a)
			}
		}
	} else {
		last, _ := netip.ParseAddr(string(tx.Get(store.Meta, poolLastKey(p.Prefix))))
		if a, err = sub.Allocate(last, used); err != nil {
			return netip.Prefix{}, &errdefs.Error{Kind: errdefs.Conflict, Msg: fmt.Sprintf("pool %s: %v", p.Prefix, err), Err: err}
		}
		if err := tx.Put(store.Meta, poolLastKey(p.Prefix), []byte(a.String())); err != nil {
			return netip.Prefix{}, err
		}
	}
	if err := tx.Put(reservedBucket, reservedKey(p.Prefix, a), []byte(time.Now().UTC().Format(time.RFC3339))); err != nil {
		return netip.Prefix{}, err
	}
	return netip.PrefixFrom(a, p.Prefix.Bits()), nil
}

// ReleaseAddress drops a pool's reservation of an address; an endpoint
// holding the address keeps its lease. Unknown pools and addresses are not
// errors.
func (s *Service) ReleaseAddress(ctx context.Context, poolID string, a netip.Addr) error {
	return s.change(ctx, func() error {
		return s.d.Store.Update(func(tx store.Tx) error {
			prefix, err := netip.ParsePrefix(poolID)
			if err != nil || !a.IsValid() {
				return nil
			}
			return tx.Delete(reservedBucket, reservedKey(prefix.Masked(), a))
		})
	})
}

func addrText(a netip.Addr) string {
	if a.IsValid() {
		return a.String()
	}
	return ""
}

func prefixText(p netip.Prefix) string {
	if p.IsValid() {
		return p.String()
	}
	return ""
}
