// Package driver is the interface every kind of network implements (the
// Linux bridge, and the drivers that follow it), the facts the network service
// hands a driver, and what the drivers of one host share: its netlink handle,
// ctnet's firewall table and the table of ports served on [::1].
//
// A driver owns the kernel side of its networks and endpoints and nothing of
// the store: the service plans in a store transaction, calls the driver
// outside it, then commits. Every method is idempotent; a failed one undoes
// what it made.
package driver

import (
	"context"
	"errors"
	"net"
	"net/netip"

	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/portspec"
)

// Network is a network as its driver sees it.
type Network struct {
	ID, Name string
	// Default marks the network every container gets unless told otherwise
	// (Docker's "bridge"); a driver may name its device after it.
	Default bool
	// Device is the kernel device the network lives on (a bridge); the
	// driver chooses it in PlanNetwork unless an option names it.
	Device   string
	MTU      int
	Internal bool // no route out, no NAT
	IPv6     bool
	Subnets  []Subnet
	Options  map[string]string // the driver's options, as PlanNetwork accepted them
}

// Subnet is one address range of a network with its gateway.
type Subnet struct {
	Prefix  netip.Prefix
	Gateway netip.Addr
}

// Endpoint is one attachment's interface as its driver sees it.
type Endpoint struct {
	ID string
	// HostIf is the host side of the endpoint (the veth end on the bridge),
	// chosen by CreateEndpoint.
	HostIf   string
	IfName   string // inside the namespace: eth0, eth1, …
	MAC      net.HardwareAddr
	Addrs    []netip.Prefix // each with its subnet's length
	Gateways []netip.Addr   // default routes; none on internal networks
	Ports    []portspec.Mapping
	// NetNS is the path of the namespace the endpoint joins ("" for one
	// made by JoinHost) and NetNSKey its identity (namespace.KeyOf), to tell
	// it from a later one at the same path: a driver whose endpoint lives
	// only inside the namespace (macvlan) leaves through it.
	NetNS, NetNSKey string
}

// Logf receives one line per repair.
type Logf func(format string, args ...any)

// Driver is one kind of network.
type Driver interface {
	// Name is what `network create --driver` takes.
	Name() string
	// PlanNetwork validates n's options and fills in what the driver
	// decides (Device, MTU), given every other network of the host. It
	// may read the kernel, never change it.
	PlanNetwork(n *Network, others []Network) error
	// CreateNetwork makes n exist in the kernel (again, after a reboot or
	// a deletion behind ctnet's back). Failing, it leaves nothing it made.
	CreateNetwork(ctx context.Context, n Network) error
	// DeleteNetwork removes what CreateNetwork made; missing pieces are
	// not errors.
	DeleteNetwork(ctx context.Context, n Network) error
	// CreateEndpoint fills in the driver's part of a new endpoint (its host
	// interface name) without touching the kernel.
	CreateEndpoint(n Network, ep *Endpoint) error
	// Join makes the endpoint in the kernel and puts its inner interface
	// into the sandbox, configured. Failing, it leaves nothing.
	Join(ctx context.Context, n Network, ep Endpoint, sb Sandbox) error
	// Leave removes the endpoint from the kernel. nsGoing says its
	// namespace is about to be dropped, so the kernel will reclaim what is
	// inside it; a driver may then skip what the kernel does anyway.
	Leave(ctx context.Context, n Network, ep Endpoint, nsGoing bool) error
	// Publish makes ep.Ports reachable; Unpublish removes exactly them.
	Publish(ctx context.Context, n Network, ep Endpoint) error
	Unpublish(ctx context.Context, n Network, ep Endpoint) error
	// Inventory lists what the driver finds of its own in the kernel. The
	// service takes it before it reads the store, so that an object made
	// by a concurrent operation is either in the inventory and the store,
	// or in neither.
	Inventory(ctx context.Context) (Inventory, error)
	// Filter is what the driver's networks and endpoints need in the shared
	// packet filter.
	Filter(s State) Filter
	// Reconcile makes the kernel agree with s: it recreates what is
	// missing, repairs what drifted and removes what nothing owns, telling
	// each change to logf.
	Reconcile(ctx context.Context, inv Inventory, s State, logf Logf) error
}

// Sandbox is the network namespace an endpoint joins.
type Sandbox interface {
	Path() string
	// Handle is a netlink handle acting inside the namespace.
	Handle() *netx.Handle
}

// Inventory is a driver's own record of what it found in the kernel; only
// the driver that made it reads it.
type Inventory any

// State is what the store says a driver's networks should be.
type State struct {
	Networks []NetworkState
	// Keep holds host interfaces that no endpoint in Networks owns but that
	// are not orphans: endpoints being made or removed right now, and those
	// the kernel is still reclaiming with their namespace.
	Keep map[string]bool
}

// NetworkState is one network with the endpoints it should have.
type NetworkState struct {
	Network
	Endpoints []EndpointState
}

// EndpointState is an endpoint whose namespace lives.
type EndpointState struct {
	Endpoint
	Name string // for people: a container's name, a namespace's path
}

// ErrStale marks failures caused by kernel state removed behind ctnet's back
// (a bridge, the firewall table): the service reconciles and tries again.
var ErrStale = errors.New("kernel state is stale")

// Stale marks err as caused by stale kernel state.
func Stale(err error) error { return staleError{err} }

type staleError struct{ err error }

func (e staleError) Error() string   { return e.err.Error() }
func (e staleError) Unwrap() []error { return []error{e.err, ErrStale} }

// Warning is a failure that leaves the operation done: the caller tells the
// user and goes on.
type Warning struct{ Err error }

func (w *Warning) Error() string { return w.Err.Error() }
func (w *Warning) Unwrap() error { return w.Err }
