package driver

import (
	"context"
	"net"
	"net/netip"
)

// Drivers whose networks span hosts implement these besides Driver; the
// service asks for them with a type assertion, so a driver that is local to
// one host (the bridge) needs none of them.

// Scopes of a driver's networks, as `network ls` shows them.
const (
	ScopeLocal  = "local"  // a network exists on one host (the bridge)
	ScopeGlobal = "global" // one network on every host of a cluster (the overlay)
)

// Scoper tells the scope of a driver's networks; a driver without it is
// local.
type Scoper interface {
	Scope() string
}

// ScopeOf is d's scope.
func ScopeOf(d Driver) string {
	if s, ok := d.(Scoper); ok {
		return s.Scope()
	}
	return ScopeLocal
}

// Host is this host as a cluster sees it.
type Host struct {
	ID string
	// Addr is where the other hosts reach this one: the source and
	// destination of tunnelled traffic (the VTEP address).
	Addr netip.Addr
}

// HostAware drivers learn which host they run on; the service tells them
// when it opens with a shared store. Without it they refuse global
// networks.
type HostAware interface {
	SetHost(Host)
}

// Peer is an endpoint of a global network that lives on another host.
type Peer struct {
	MAC   net.HardwareAddr
	Addrs []netip.Addr
	Host  netip.Addr // the address of its host (its VTEP)
}

// Peered drivers forward traffic to the endpoints of other hosts.
// SyncPeers makes what this host knows of network n's remote endpoints
// exactly peers (nothing, when the network has no kernel side here); it
// touches only the kernel and reports each change to logf.
type Peered interface {
	SyncPeers(ctx context.Context, n Network, peers []Peer, logf Logf) error
}

// Claimer names what must be unique among the networks of a driver across
// every host (a VNI): the service refuses, in the transaction that records a
// new network, a claim another network holds.
type Claimer interface {
	Claims(n Network) []string
}
