package network

import (
	"fmt"
	"net/netip"
	"sync"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/driver/drivers"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/store"
)

// DryRun is a service that plans every change exactly as the host's does —
// the same validation, allocation, port reservation and driver planning, in
// the same order — but against a copy of the store held in memory, with
// every driver telling Log what its kernel work would be instead of doing
// it. Nothing of the host changes: not the store, not the kernel.
type DryRun struct {
	*Service
	Log    *driver.Log
	kernel *dryKernel
}

// stateBuckets are the store's buckets a dry run copies.
var stateBuckets = []string{store.Networks, store.Endpoints, store.Leases, store.Containers, store.Meta, store.Ports}

// OpenDryRun opens the dry run of the host's service (cfg as for Open).
func OpenDryRun(cfg Config) (*DryRun, error) {
	real, err := store.OpenBolt(cfg.Root, cfg.RunRoot)
	if err != nil {
		return nil, err
	}
	mem := store.NewMemory()
	copied := map[string]map[string][]byte{}
	if err := real.View(func(tx store.Tx) error {
		for _, b := range stateBuckets {
			copied[b] = map[string][]byte{}
			if err := tx.ForEach(b, "", func(k string, v []byte) error {
				copied[b][k] = append([]byte(nil), v...)
				return nil
			}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return nil, fmt.Errorf("read the state to plan against: %w", err)
	}
	if err := mem.Update(func(tx store.Tx) error {
		for b, kvs := range copied {
			for k, v := range kvs {
				if err := tx.Put(b, k, v); err != nil {
					return err
				}
			}
		}
		return nil
	}); err != nil {
		return nil, err
	}
	k, err := HostKernel()
	if err != nil {
		return nil, err
	}
	log := &driver.Log{}
	sh := driver.NewShared(k.host, cfg.Cgroup)
	var ds []driver.Driver
	for _, d := range drivers.All(sh) {
		x, err := driver.Explaining(d, log)
		if err != nil {
			k.Close()
			return nil, err
		}
		ds = append(ds, x)
	}
	dk := &dryKernel{hostKernel: k, planned: map[string]bool{}}
	say := cfg.Log
	s := New(Deps{
		Store:   mem,
		Kernel:  dk,
		Drivers: driver.NewRegistry(nil, ds...),
		Lock:    &MemLock{},
		Log: func(format string, args ...any) {
			log.Add(driver.Note(format, args...))
			if say != nil {
				say(format, args...)
			}
		},
	})
	s.onClose = func() error { sh.Close(); return k.Close() }
	return &DryRun{Service: s, Log: log, kernel: dk}, nil
}

// PlanNamespace declares a namespace that the explained command would make
// at path: attaching it is planned (as eth0, eth1, … of an empty namespace)
// instead of refused as missing.
func (d *DryRun) PlanNamespace(path string) {
	d.kernel.mu.Lock()
	d.kernel.planned[path] = true
	d.kernel.mu.Unlock()
}

type dryKernel struct {
	*hostKernel
	mu      sync.Mutex
	planned map[string]bool
}

func (k *dryKernel) isPlanned(path string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.planned[path]
}

func (k *dryKernel) NamespaceKey(path string) string {
	if k.isPlanned(path) {
		return "planned:" + path
	}
	return k.hostKernel.NamespaceKey(path)
}

func (k *dryKernel) OpenNamespace(path string) (Namespace, error) {
	if k.isPlanned(path) {
		return &plannedNS{path: path}, nil
	}
	return k.hostKernel.OpenNamespace(path)
}

// plannedNS is a namespace not made yet: it has no links but lo.
type plannedNS struct{ path string }

func (p *plannedNS) Path() string { return p.path }

// Handle is nil: only drivers that explain see a planned namespace.
func (p *plannedNS) Handle() *netx.Handle { return nil }
func (p *plannedNS) Key() string          { return "planned:" + p.path }
func (p *plannedNS) Close()               {}
func (p *plannedNS) HasLink(name string) (bool, error) {
	return name == "lo", nil
}
func (p *plannedNS) NextIfName(prefix string) (string, error) { return prefix + "0", nil }
func (p *plannedNS) SetDefaultRoute(string, netip.Addr) error { return nil }
