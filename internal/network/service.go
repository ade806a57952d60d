// Package network is ctnet's network service, the one API every front end
// uses: networks, attachments of namespaces to them (keyed by an owner any
// caller can name), their addresses and published ports, the embedded
// resolver's records, and reconcile. Kernel work is the drivers'; the service
// plans each operation in a store transaction, has the driver apply it
// outside the transaction, then commits, so a store that retries its
// transactions never repeats kernel work. A crash in between is repaired by
// Reconcile. A Service is safe for concurrent use.
package network

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/driver/drivers"
	"github.com/ctnet/ctnet/internal/store"
	"github.com/ctnet/ctnet/internal/store/etcd"
)

// Command is a process the service starts, as the front end describes it,
// so that every global option reaches it.
type Command struct {
	Path string
	Args []string // without Path
}

// Deps is what a Service is made of.
type Deps struct {
	Store   store.Store
	Kernel  Kernel
	Drivers *driver.Registry
	// Lock serialises Reconcile against every other change on this host.
	Lock Locker
	// DNS is the resolver's snapshot file; "" runs without the embedded
	// resolver.
	DNS string
	// Resolver starts the embedded resolver (`ctnet system dns-serve` with
	// the front end's global options).
	Resolver Command
	// Log receives one line per repair or notable step.
	Log func(format string, args ...any)
	// Host is this host's id when hosts share the store; "" (one host)
	// keeps every key as it always was.
	Host string
	// Cluster is how this host takes part in the cluster (nil: one host).
	Cluster *Cluster
}

// Service is one host's networks.
type Service struct {
	d       Deps
	log     func(string, ...any)
	onClose func() error
}

// New makes a service of d's parts (tests give fakes).
func New(d Deps) *Service {
	s := &Service{d: d, log: d.Log}
	if s.log == nil {
		s.log = func(string, ...any) {}
	}
	return s
}

// Config is what a front end says about the host's service.
type Config struct {
	Root    string // persistent state: network definitions
	RunRoot string // runtime state: attachments, leases, namespace pins
	// Cgroup is the cgroup2 directory where the programs serving ports on
	// [::1] are attached; "" means the root of the cgroup2 hierarchy.
	Cgroup   string
	Resolver Command
	Log      func(format string, args ...any)
	// Etcd, when set, is the store hosts share (network definitions,
	// leases, every host's attachments); nil is bolt under Root and
	// RunRoot, for one host.
	Etcd *etcd.Config
	// Cluster options, with Etcd only.
	ClusterOptions
}

// Open opens the service of the host namespace the calling thread is in,
// with the bolt store under cfg's directories and every driver ctnet has.
func Open(cfg Config) (*Service, error) {
	k, err := HostKernel()
	if err != nil {
		return nil, err
	}
	st, host, cl, err := openStore(cfg, k)
	if err != nil {
		k.Close()
		return nil, err
	}
	sh := driver.NewShared(k.host, cfg.Cgroup)
	s := New(Deps{
		Host:     host,
		Cluster:  cl,
		Store:    st,
		Kernel:   k,
		Drivers:  driver.NewRegistry(sh, drivers.All(sh)...),
		Lock:     FileLock(filepath.Join(cfg.RunRoot, "network.lock")),
		DNS:      filepath.Join(cfg.RunRoot, "dns.json"),
		Resolver: cfg.Resolver,
		Log:      cfg.Log,
	})
	s.tellDrivers()
	s.onClose = func() error { return errors.Join(sh.Close(), k.Close(), st.Close()) }
	return s, nil
}

// Close releases the service's handles.
func (s *Service) Close() error {
	if s.onClose != nil {
		return s.onClose()
	}
	return s.d.Store.Close()
}

// Store is the service's store, which the layers above keep their own
// buckets in; with hosts sharing it, its Containers bucket is this host's.
func (s *Service) Store() store.Store { return scopeContainers(s.d.Store, s.d.Host) }

// Locker is a readers-writer lock over every ctnet process of one host.
type Locker interface {
	Lock(exclusive bool) (unlock func(), err error)
}

// FileLock is a Locker on a lock file (flock: shared for changes, exclusive
// for reconcile), across processes and within one.
type FileLock string

func (f FileLock) Lock(exclusive bool) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(string(f)), 0o700); err != nil {
		return nil, fmt.Errorf("lock %s: %w", f, err)
	}
	fh, err := os.OpenFile(string(f), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", f, err)
	}
	how := unix.LOCK_SH
	if exclusive {
		how = unix.LOCK_EX
	}
	if err := unix.Flock(int(fh.Fd()), how); err != nil {
		fh.Close()
		return nil, fmt.Errorf("lock %s: %w", f, err)
	}
	return func() { fh.Close() }, nil
}

// MemLock is a Locker within one process, for tests.
type MemLock struct{ mu sync.RWMutex }

func (m *MemLock) Lock(exclusive bool) (func(), error) {
	if exclusive {
		m.mu.Lock()
		return m.mu.Unlock, nil
	}
	m.mu.RLock()
	return m.mu.RUnlock, nil
}

// change runs op under the shared lock. If op met stale kernel state (a
// bridge or the firewall table deleted behind ctnet's back), reconcile
// repairs it and op runs once more.
func (s *Service) change(ctx context.Context, op func() error) error {
	if err := s.prepare(ctx); err != nil {
		return err
	}
	err := s.locked(false, op)
	if errors.Is(err, driver.ErrStale) {
		if _, rerr := s.reconcile(ctx, s.log); rerr != nil {
			return errors.Join(err, rerr)
		}
		err = s.locked(false, op)
	}
	return err
}

func (s *Service) locked(exclusive bool, op func() error) error {
	unlock, err := s.d.Lock.Lock(exclusive)
	if err != nil {
		return err
	}
	defer unlock()
	return op()
}

const bootKey = "boot"

// prepare runs before every operation: after a reboot (the runtime state is
// new) it repairs the kernel from the store, and the first time ever it
// creates the default network, both under the exclusive lock, so that every
// other operation waits for them.
func (s *Service) prepare(ctx context.Context) error {
	state := func() (booted, ready, pending bool, err error) {
		err = s.d.Store.View(func(tx store.Tx) error {
			booted = bytes.Equal(tx.Get(store.Meta, s.own(bootKey)), s.d.Kernel.BootID())
			n, err := store.GetJSON[Network](tx, store.Networks, s.own(DefaultNetwork))
			ready, pending = n != nil && n.Pending == "", n != nil && n.Pending != ""
			return err
		})
		return
	}
	booted, ready, _, err := state()
	if err != nil || (booted && ready) {
		return err
	}
	return s.locked(true, func() error {
		booted, ready, pending, err := state()
		if err != nil {
			return err
		}
		if !booted || pending {
			tell := s.log
			if !ready && !pending {
				tell = nil // a brand-new instance: making the table is not news
			}
			if _, err := s.reconcileLocked(ctx, tell); err != nil {
				return err
			}
		}
		if ready {
			return nil
		}
		if _, err := s.createNetwork(ctx, NetworkSpec{Name: DefaultNetwork, Default: true}); err != nil {
			return fmt.Errorf("create the default network: %w", err)
		}
		return nil
	})
}
