package network

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/store"
)

// Reconcile makes the kernel agree with the store and the store with the
// kernel: operations a crash left half done are finished or undone,
// attachments whose namespace is gone are released, each driver recreates
// what is missing and removes what nothing owns, and leases and host ports
// that nothing holds are freed. It returns one line per change. It runs under
// the exclusive lock, so no other change of this host is in flight.
func (s *Service) Reconcile(ctx context.Context) ([]string, error) {
	return s.reconcile(ctx, nil)
}

// reconcile is Reconcile that also tells each change to tell (if set).
func (s *Service) reconcile(ctx context.Context, tell func(string, ...any)) ([]string, error) {
	var changes []string
	err := s.locked(true, func() error {
		var err error
		changes, err = s.reconcileLocked(ctx, tell)
		return err
	})
	return changes, err
}

func (s *Service) reconcileLocked(ctx context.Context, tell func(string, ...any)) ([]string, error) {
	var changes []string
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		changes = append(changes, line)
		if tell != nil {
			tell("%s", line)
		}
	}
	if err := s.settle(ctx, logf); err != nil {
		return changes, err
	}
	if err := s.releaseGone(ctx, logf); err != nil {
		return changes, err
	}
	if err := s.d.Drivers.Reconcile(ctx, s.desired, logf); err != nil {
		return changes, err
	}
	if err := s.prune(logf); err != nil {
		return changes, err
	}
	if err := s.checkHeldPorts(logf); err != nil {
		return changes, err
	}
	if stale, err := s.dnsStale(); err != nil {
		return changes, err
	} else if stale {
		if err := s.publishDNS(false); err != nil {
			return changes, err
		}
		logf("embedded DNS: rewrote its records to match the containers")
	}
	if err := s.agentRunning(ctx, logf); err != nil {
		return changes, err
	}
	if started, err := s.ensureDNS(); err != nil {
		return changes, fmt.Errorf("embedded DNS: %w", err)
	} else if started {
		logf("embedded DNS: started the resolver again (it was not running)")
	}
	return changes, nil
}

// settle finishes or undoes what a crash left half done: with the exclusive
// lock held, every pending record is a crashed process's.
func (s *Service) settle(ctx context.Context, logf driver.Logf) error {
	nets, atts, bad, err := s.load()
	if err != nil {
		return err
	}
	for _, c := range bad {
		logf("skipped %s; remove the record or the run root's state file to be rid of it", c)
	}
	byID := map[string]*Network{}
	for i := range nets {
		byID[nets[i].ID] = &nets[i]
	}
	var errs []error
	for i := range atts {
		a := &atts[i]
		n := byID[a.NetworkID]
		if a.Pending == "" || n == nil {
			continue
		}
		d, err := s.d.Drivers.Get(n.Driver)
		if err != nil {
			errs = append(errs, fmt.Errorf("network %q: driver %s: %w", n.Name, n.Driver, err))
			continue
		}
		switch a.Pending {
		case pendingAttach:
			s.undoAttach(ctx, d, n, a)
			logf("released %s of %s on network %q: its attach never finished", addrOf(a), a.Name, a.Network)
		case pendingDetach:
			gone := s.d.Kernel.NamespaceKey(a.NetNS) != a.NetNSKey
			if err := s.finishDetach(ctx, n, a, gone); err != nil {
				errs = append(errs, fmt.Errorf("detach %s from network %q: %w", a.Name, n.Name, err))
				continue
			}
			logf("released %s of %s on network %q: its detach never finished", addrOf(a), a.Name, a.Network)
		}
	}
	for i := range nets {
		n := &nets[i]
		if n.PendingHost != s.d.Host {
			continue // another host's operation, in flight or to be settled there
		}
		switch n.Pending {
		case pendingCreate, pendingRemove:
			if err := s.finishRemove(ctx, n); err != nil {
				errs = append(errs, err)
				continue
			}
			how := "its creation never finished"
			if n.Pending == pendingRemove {
				how = "its removal never finished"
			}
			logf("removed network %q: %s", n.Name, how)
		}
	}
	return errors.Join(errs...)
}

// releaseGone releases the attachments whose namespace is gone.
func (s *Service) releaseGone(ctx context.Context, logf driver.Logf) error {
	nets, atts, _, err := s.load()
	if err != nil {
		return err
	}
	var errs []error
	for i := range atts {
		a := &atts[i]
		if s.d.Kernel.NamespaceKey(a.NetNS) == a.NetNSKey {
			continue
		}
		n := networkByID(nets, a.NetworkID)
		if n == nil {
			if err := s.d.Store.Update(func(tx store.Tx) error { return forget(tx, a) }); err != nil {
				return err
			}
			logf("released %s of %s: its network %q is gone", addrOf(a), a.Name, a.Network)
			continue
		}
		if err := s.finishDetach(ctx, n, a, false); err != nil {
			errs = append(errs, fmt.Errorf("release %s of %s on network %q: %w", addrOf(a), a.Name, a.Network, err))
			continue
		}
		logf("released %s of %s on network %q: its namespace is gone", addrOf(a), a.Name, a.Network)
	}
	return errors.Join(errs...)
}

// load reads the networks this host sees and its own attachments, past
// attachments that do not decode (returned apart).
func (s *Service) load() (nets []Network, atts []Attachment, bad []store.Corrupt, err error) {
	err = s.d.Store.View(func(tx store.Tx) error {
		var err error
		if nets, err = s.networks(tx, false); err != nil {
			return err
		}
		atts, bad, err = s.ownAttachmentsLenient(tx, "")
		return err
	})
	return nets, atts, bad, err
}

// desired is what the store wants of each driver's networks.
func (s *Service) desired() (map[string]driver.State, error) {
	out := map[string]driver.State{}
	err := s.d.Store.View(func(tx store.Tx) error {
		nets, err := s.networks(tx, false)
		if err != nil {
			return err
		}
		atts, _, err := s.ownAttachmentsLenient(tx, "")
		if err != nil {
			return err
		}
		keep := map[string]bool{}
		marks := s.own(reclaimPrefix)
		tx.ForEach(store.Meta, marks, func(k string, v []byte) error {
			if t, err := time.Parse(time.RFC3339, string(v)); err == nil && time.Since(t) < time.Minute {
				keep[strings.TrimPrefix(k, marks)] = true
			}
			return nil
		})
		idx := map[string]int{} // network id -> index in its driver's state
		for _, n := range nets {
			if n.Pending != "" {
				continue
			}
			st := out[n.Driver]
			if st.Keep == nil {
				st.Keep = keep
			}
			idx[n.ID] = len(st.Networks)
			st.Networks = append(st.Networks, driver.NetworkState{Network: n.driverNet()})
			out[n.Driver] = st
		}
		for _, a := range atts {
			i, ok := idx[a.NetworkID]
			if !ok {
				continue
			}
			n := networkByID(nets, a.NetworkID)
			st := out[n.Driver]
			if a.Pending != "" {
				keep[a.HostIf] = true
				continue
			}
			st.Networks[i].Endpoints = append(st.Networks[i].Endpoints, driver.EndpointState{
				Endpoint: a.endpoint(n), Name: a.Name,
			})
		}
		return nil
	})
	return out, err
}

// prune frees leases and host ports that no attachment holds, and drops
// bookkeeping of networks and reclaims that are over.
func (s *Service) prune(logf driver.Logf) error {
	var lines []string
	err := s.d.Store.Update(func(tx store.Tx) error {
		lines = nil // the closure may run again
		held := func(_ string, v []byte) bool { return tx.Get(store.Endpoints, string(v)) == nil }
		// Leases are shared: this host frees its own (other hosts', those of
		// a host that is gone, are their reconcile's or the agents' to free).
		ownHeld := func(k string, v []byte) bool { return strings.HasPrefix(string(v), s.own("")) && held(k, v) }
		if err := pruneKeys(tx, store.Leases, "", ownHeld,
			func(k string) { lines = append(lines, "released lease "+k+": no endpoint holds it") }); err != nil {
			return err
		}
		if err := pruneKeys(tx, store.Ports, s.own(""), held,
			func(k string) { lines = append(lines, "freed host port "+k+": no running container publishes it") }); err != nil {
			return err
		}
		netIDs := map[string]bool{}
		if err := tx.ForEach(store.Networks, "", func(k string, v []byte) error {
			n, err := store.GetJSON[Network](tx, store.Networks, k)
			if err == nil && n != nil {
				netIDs[n.ID] = true
			}
			return err
		}); err != nil {
			return err
		}
		if err := pruneKeys(tx, store.Meta, "last/", func(k string, _ []byte) bool {
			id, _, _ := strings.Cut(strings.TrimPrefix(k, "last/"), "/")
			return !netIDs[id]
		}, nil); err != nil {
			return err
		}
		if err := pruneKeys(tx, store.Meta, macPrefix, held, nil); err != nil {
			return err
		}
		if err := pruneKeys(tx, store.Meta, s.own(reclaimPrefix), func(_ string, v []byte) bool {
			t, err := time.Parse(time.RFC3339, string(v))
			return err != nil || time.Since(t) >= time.Minute
		}, nil); err != nil {
			return err
		}
		return tx.Put(store.Meta, s.own(bootKey), s.d.Kernel.BootID())
	})
	for _, l := range lines {
		logf("%s", l)
	}
	return err
}

// pruneKeys deletes the keys under prefix that stale picks, telling each to
// logged (if set). Keys are collected first: a bucket must not change under
// its own cursor.
func pruneKeys(tx store.Tx, bucket, prefix string, stale func(string, []byte) bool, logged func(string)) error {
	var doomed []string
	if err := tx.ForEach(bucket, prefix, func(k string, v []byte) error {
		if stale(k, v) {
			doomed = append(doomed, k)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, k := range doomed {
		if err := tx.Delete(bucket, k); err != nil {
			return err
		}
		if logged != nil {
			logged(k)
		}
	}
	return nil
}

func networkByID(nets []Network, id string) *Network {
	for i := range nets {
		if nets[i].ID == id {
			return &nets[i]
		}
	}
	return nil
}

// checkHeldPorts reports host processes listening on a published TCP port:
// their clients from outside reach the container instead. A container's
// monitor holds its ports so none can bind; endpoints without one (CNI,
// Docker, a namespace attached by path) are watched here.
func (s *Service) checkHeldPorts(logf driver.Logf) error {
	listen := s.d.Kernel.TCPListeners()
	if len(listen) == 0 {
		return nil
	}
	atts, err := s.Attachments()
	if err != nil {
		return err
	}
	for _, a := range atts {
		told := map[uint16]bool{} // a port on 0.0.0.0 and :: is one warning
		for _, m := range a.Ports {
			if m.Proto == "tcp" && listen[m.HostPort] && !told[m.HostPort] {
				told[m.HostPort] = true
				logf("warning: a host process listens on tcp port %d, which %s publishes: connections from outside reach the container, not it; stop it or publish another port", m.HostPort, a.Describe())
			}
		}
	}
	return nil
}
