package network

import (
	"fmt"
	"net/netip"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/ipam"
	"github.com/ctnet/ctnet/internal/store"
)

// Allocator hands out an attachment's address of one subnet, inside the
// transaction that plans the attachment; the service records the lease.
type Allocator interface {
	// Allocate returns want if it can be had, or (want invalid) a free
	// address of s.
	Allocate(tx store.Tx, n *Network, s ipam.Subnet, want netip.Addr) (netip.Addr, error)
}

// Builtin is ctnet's own allocator: the leases in the store, the next free
// address after the last one given (as Docker's), the gateway, network and
// broadcast addresses, aux addresses and anything outside --ip-range kept.
type Builtin struct{}

func (Builtin) Allocate(tx store.Tx, n *Network, s ipam.Subnet, want netip.Addr) (netip.Addr, error) {
	used := func(a netip.Addr) bool { return tx.Get(store.Leases, leaseKey(n.ID, a)) != nil }
	if want.IsValid() {
		if err := s.Check(want); err != nil {
			return netip.Addr{}, &errdefs.Error{Kind: errdefs.Invalid, Field: ipField(want), Msg: err.Error(), Err: err}
		}
		if err := inUse(tx, n, want); err != nil {
			return netip.Addr{}, err
		}
		return want, nil
	}
	last, _ := netip.ParseAddr(string(tx.Get(store.Meta, lastKey(n.ID, s.Prefix))))
	a, err := s.Allocate(last, used)
	if err != nil {
		return netip.Addr{}, &errdefs.Error{Kind: errdefs.Conflict, Msg: err.Error(), Err: err}
	}
	return a, tx.Put(store.Meta, lastKey(n.ID, s.Prefix), []byte(a.String()))
}

// Given hands out the addresses a caller's own IPAM chose (Docker's IPAM
// driver, a CNI ipam plugin): each must lie in the network's subnet of its
// family and be free; their leases keep the built-in allocator off them.
type Given []netip.Addr

func (g Given) Allocate(tx store.Tx, n *Network, s ipam.Subnet, want netip.Addr) (netip.Addr, error) {
	for _, a := range g {
		if a.Is4() != s.Prefix.Addr().Is4() {
			continue
		}
		if want.IsValid() && want != a {
			continue
		}
		if !s.Prefix.Contains(a) {
			return netip.Addr{}, errdefs.Field(ipField(a), fmt.Sprintf("address %s from the IPAM is outside subnet %s of network %q", a, s.Prefix, n.Name))
		}
		if err := inUse(tx, n, a); err != nil {
			return netip.Addr{}, err
		}
		return a, nil
	}
	return netip.Addr{}, errdefs.Field(ipField(s.Prefix.Addr()), fmt.Sprintf("the IPAM gave no address for subnet %s of network %q", s.Prefix, n.Name))
}

func ipField(a netip.Addr) string {
	if a.Is4() {
		return "ip"
	}
	return "ip6"
}

// inUse says who holds an address already.
func inUse(tx store.Tx, n *Network, a netip.Addr) error {
	key := tx.Get(store.Leases, leaseKey(n.ID, a))
	if key == nil {
		return nil
	}
	by := string(key)
	if o, _ := store.GetJSON[Attachment](tx, store.Endpoints, by); o != nil {
		by = o.Name
	}
	err := ipam.InUse(a, by)
	return &errdefs.Error{Kind: errdefs.Conflict, Field: ipField(a), Msg: err.Error(), Err: err}
}
