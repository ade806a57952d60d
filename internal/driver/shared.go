package driver

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/loopback"
	"github.com/ctnet/ctnet/internal/netx"
)

// Shared is what the drivers of one host share: the host namespace's netlink
// handle, ctnet's firewall table and the table of ports served on [::1]. The
// tables are opened on first use; Shared is safe for concurrent use.
type Shared struct {
	Host   *netx.Handle
	cgroup string

	mu     sync.Mutex
	fw     *firewall.Firewall
	lo     *loopback.Table
	loErr  error
	loOnce bool
}

// NewShared shares host among the drivers. cgroup is the cgroup2 directory
// where the programs serving ports on [::1] are attached ("" = the root of
// the cgroup2 hierarchy).
func NewShared(host *netx.Handle, cgroup string) *Shared {
	return &Shared{Host: host, cgroup: cgroup}
}

// Firewall returns ctnet's table in the host namespace.
func (s *Shared) Firewall() (*firewall.Firewall, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fw == nil {
		fw, err := firewall.New(firewall.WithNetNS(int(s.Host.NS())))
		if err != nil {
			return nil, fmt.Errorf("nftables: %w", err)
		}
		s.fw = fw
	}
	return s.fw, nil
}

// Loopback returns the [::1] ports of the host namespace, or an error saying
// why ports cannot be served on [::1] here.
func (s *Shared) Loopback() (*loopback.Table, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.loOnce {
		s.loOnce = true
		s.lo, s.loErr = openLoopback(s.cgroup)
	}
	return s.lo, s.loErr
}

func openLoopback(dir string) (*loopback.Table, error) {
	if dir == "" {
		var err error
		if dir, err = loopback.DefaultCgroup(); err != nil {
			return nil, err
		}
	}
	cookie, err := loopback.Cookie()
	if err != nil {
		return nil, err
	}
	return loopback.New(dir, cookie), nil
}

// Close releases the firewall's socket (the tables stay in the kernel).
func (s *Shared) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fw != nil {
		return s.fw.Close()
	}
	return nil
}

// Filter is what networks and endpoints need in the shared packet filter.
type Filter struct {
	Networks  []firewall.Network
	Endpoints []firewall.Endpoint // bound to their bridge port (anti-spoofing)
	Ports     []firewall.Port
	Loopback  []loopback.Port // ports served on [::1]
}

func (f *Filter) add(o Filter) {
	f.Networks = append(f.Networks, o.Networks...)
	f.Endpoints = append(f.Endpoints, o.Endpoints...)
	f.Ports = append(f.Ports, o.Ports...)
	f.Loopback = append(f.Loopback, o.Loopback...)
}

// ensure makes the firewall table and the [::1] table exactly f.
func (s *Shared) ensure(f Filter, logf Logf) error {
	fw, err := s.Firewall()
	if err != nil {
		return err
	}
	changes, err := fw.Ensure(f.Networks, f.Endpoints, f.Ports)
	if err != nil {
		return fmt.Errorf("firewall: %w", err)
	}
	for _, c := range changes {
		logf("firewall: %s", c)
	}
	// [::1] is not worth failing the other repairs for.
	lo, err := s.Loopback()
	var loChanges []string
	if err == nil {
		loChanges, err = lo.Sync(f.Loopback)
	}
	if err != nil && len(f.Loopback) > 0 {
		logf("cannot serve %d port(s) on [::1]: %v", len(f.Loopback), err)
	}
	for _, c := range loChanges {
		logf("%s", c)
	}
	return nil
}

// Registry holds the drivers of one host by name.
type Registry struct {
	shared  *Shared
	drivers map[string]Driver
	order   []string
}

// NewRegistry registers drivers (made over shared, which may be nil for
// drivers that share nothing, as in tests).
func NewRegistry(shared *Shared, drivers ...Driver) *Registry {
	r := &Registry{shared: shared, drivers: map[string]Driver{}}
	for _, d := range drivers {
		r.drivers[d.Name()] = d
		r.order = append(r.order, d.Name())
	}
	return r
}

// ErrUnknown says no driver has the name asked for.
var ErrUnknown = errors.New("unknown driver")

// Get returns the driver called name.
func (r *Registry) Get(name string) (Driver, error) {
	if d, ok := r.drivers[name]; ok {
		return d, nil
	}
	return nil, ErrUnknown
}

// Names lists the drivers in the order they were registered.
func (r *Registry) Names() []string { return r.order }

// Reconcile takes every driver's inventory, then the state the store wants
// (load, keyed by driver name), puts the shared packet filter right and lets
// each driver repair its own kernel objects.
func (r *Registry) Reconcile(ctx context.Context, load func() (map[string]State, error), logf Logf) error {
	invs := map[string]Inventory{}
	for _, name := range r.order {
		inv, err := r.drivers[name].Inventory(ctx)
		if err != nil {
			return fmt.Errorf("driver %s: %w", name, err)
		}
		invs[name] = inv
	}
	states, err := load()
	if err != nil {
		return err
	}
	// The table first: a network made again adds its elements to it.
	if r.shared != nil {
		var f Filter
		for _, name := range r.order {
			f.add(r.drivers[name].Filter(states[name]))
		}
		if err := r.shared.ensure(f, logf); err != nil {
			return err
		}
	}
	var errs []error
	for _, name := range r.order {
		if err := r.drivers[name].Reconcile(ctx, invs[name], states[name], logf); err != nil {
			errs = append(errs, fmt.Errorf("driver %s: %w", name, err))
		}
	}
	return errors.Join(errs...)
}
