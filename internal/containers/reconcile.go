package containers

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/network"
	"github.com/ctnet/ctnet/internal/ocirt"
	"github.com/ctnet/ctnet/internal/store"
)

// Reconcile cleans containers that ended without anyone noticing (their
// monitor was killed, the host rebooted, ctnet crashed while creating them)
// and namespace pins that no container owns, then has the network service
// reconcile. It returns one line per change.
func (m *Manager) Reconcile(ctx context.Context) ([]string, error) {
	var changes []string
	logf := func(format string, args ...any) { changes = append(changes, fmt.Sprintf(format, args...)) }
	if err := m.reconcile(ctx, logf); err != nil {
		return changes, err
	}
	more, err := m.net.Reconcile(ctx)
	return append(changes, more...), err
}

func (m *Manager) reconcile(ctx context.Context, logf func(string, ...any)) error {
	// Pins are read before the containers: Run records a container before it
	// pins its namespace, so every pin seen here has its record in the list.
	dir := filepath.Join(m.cfg.RunRoot, "netns")
	entries, _ := os.ReadDir(dir)
	// Bundles likewise: Run records a container before it creates one.
	var rt *ocirt.Runtime
	var bundles []string
	if m.haveBundles() {
		var err error
		if rt, err = m.runtimeFor(""); err == nil {
			bundles, _ = rt.Leftovers(func(string) bool { return false })
		}
	}
	var cs []Container
	if err := m.st.View(func(tx store.Tx) error {
		var err error
		var bad []store.Corrupt
		cs, bad, err = store.ListJSONLenient[Container](tx, store.Containers, "")
		for _, c := range bad {
			logf("skipped %s; remove the record or the run root's state file to be rid of it", c)
		}
		return err
	}); err != nil {
		return err
	}
	pins := map[string]bool{}
	for i := range cs {
		c := &cs[i]
		if c.OwnNS {
			pins[c.NetNS] = true
		}
		if c.CreatorPID != 0 && unix.Kill(c.CreatorPID, 0) == nil {
			continue // still being set up by a live ctnet
		}
		rt, err := m.runtimeFor(c.Runtime)
		if err != nil {
			return err
		}
		st, err := rt.State(c.ID)
		switch {
		case err == nil && st.Running:
			continue
		case err != nil || c.CreatorPID != 0 || c.AutoRemove:
			if err := m.remove(ctx, rt, c); err != nil {
				return err
			}
			why := "it ended and was started with --rm"
			switch {
			case c.CreatorPID != 0:
				why = "its creation never finished"
			case err != nil:
				why = "its runtime state is gone"
			}
			logf("removed container %s (%s): %s", c.Name, network.ShortID(c.ID), why)
		case c.OwnNS && namespace.KeyOf(c.NetNS) != "":
			if err := m.releaseNetwork(ctx, c); err != nil {
				return err
			}
			logf("released the network of container %s (%s): it has exited", c.Name, network.ShortID(c.ID))
		}
	}
	// Bundles and writable layers no record owns: a crash before the record
	// was written, a run root emptied by a reboot or by hand.
	known := map[string]bool{}
	for _, c := range cs {
		known[c.ID] = true
	}
	if len(bundles) > 0 {
		seen := map[string]bool{}
		for _, id := range bundles {
			seen[id] = true
		}
		removed, err := rt.Prune(func(id string) bool { return known[id] || !seen[id] })
		for _, id := range removed {
			logf("removed the bundle of container %s: no container record owns it", network.ShortID(id))
		}
		if err != nil {
			return err
		}
	}
	for _, de := range entries {
		p := filepath.Join(dir, de.Name())
		if !pins[p] {
			if err := namespace.Unpin(p); err != nil {
				return err
			}
			logf("dropped namespace pin %s: no container owns it", p)
		}
	}
	return nil
}

// haveBundles reports whether any container was ever made here (so that
// looking does not create the runtime's directories).
func (m *Manager) haveBundles() bool {
	for _, d := range []string{m.cfg.RunRoot, m.cfg.Root} {
		if _, err := os.Stat(filepath.Join(d, "containers")); err == nil {
			return true
		}
	}
	return false
}
