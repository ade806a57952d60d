package engine

import (
	"bytes"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/driver/bridge"
	"github.com/ctnet/ctnet/internal/firewall"
	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/nspin"
	"github.com/ctnet/ctnet/internal/store"
)

const bootKey = "boot"

// prepare runs before every command that needs the networks: after a reboot
// (the runtime state is new) it repairs the kernel from the store, and the
// first time ever it creates the default network.
func (e *Engine) prepare() error {
	var booted, haveDefault bool
	err := e.store.View(func(tx store.Tx) error {
		booted = bytes.Equal(tx.Get(store.Meta, bootKey), bootID())
		haveDefault = tx.Get(store.Networks, DefaultNetwork) != nil
		return nil
	})
	if err != nil {
		return err
	}
	if !booted {
		if err := RequireRoot(); err != nil {
			return err
		}
		if !haveDefault {
			// A brand-new instance: making the table is not news.
			log := e.Log
			e.Log = func(string, ...any) {}
			defer func() { e.Log = log }()
		}
		if _, err := e.Reconcile(); err != nil {
			return err
		}
	}
	if !haveDefault {
		return e.ensureDefault()
	}
	return nil
}

func bootID() []byte {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return bytes.TrimSpace(b)
}

// Reconcile makes the kernel agree with the store and the store with the
// kernel: missing bridges and firewall elements are recreated, endpoints
// whose namespace is gone are released, and links, bridges and leases that
// no stored object owns are removed. It returns one line per change.
func (e *Engine) Reconcile() ([]string, error) {
	if err := RequireRoot(); err != nil {
		return nil, err
	}
	var changes []string
	logf := func(format string, args ...any) {
		line := fmt.Sprintf(format, args...)
		changes = append(changes, line)
		e.Log("%s", line)
	}
	if err := e.reconcileContainers(logf); err != nil {
		return changes, err
	}
	err := e.store.Update(func(tx store.Tx) error {
		nets, err := listJSON[Network](tx, store.Networks, "")
		if err != nil {
			return err
		}
		links, err := netx.Links(e.host)
		if err != nil {
			return fmt.Errorf("list host links: %w", err)
		}
		byName := map[string]netlink.Link{}
		for _, l := range links {
			byName[l.Attrs().Name] = l
		}

		// Networks: every stored bridge exists; no ctnet bridge without a network.
		ours := map[string]*Network{}
		var rules []firewall.Network
		for i := range nets {
			ours[nets[i].Bridge] = &nets[i]
			rules = append(rules, nets[i].driverNet().Rules())
		}
		// The table first: recreating a bridge adds its network's elements to it.
		fw, err := e.firewall()
		if err != nil {
			return err
		}
		var ports published
		cs, err := listJSON[Container](tx, store.Containers, "")
		if err != nil {
			return err
		}
		for i := range cs {
			p, err := e.containerPorts(tx, &cs[i])
			if err != nil {
				return err
			}
			ports.fw = append(ports.fw, p.fw...)
			ports.lo = append(ports.lo, p.allLo()...)
		}
		fwChanges, err := fw.Ensure(rules, ports.fw)
		if err != nil {
			return fmt.Errorf("firewall: %w", err)
		}
		for _, c := range fwChanges {
			logf("firewall: %s", c)
		}
		// [::1] is not worth failing the other repairs for.
		var loChanges []string
		lo, err := e.loopback()
		if err == nil {
			loChanges, err = lo.Sync(ports.lo)
		}
		if err != nil && len(ports.lo) > 0 {
			logf("cannot serve %d port(s) on [::1]: %v", len(ports.lo), err)
		}
		for _, c := range loChanges {
			logf("%s", c)
		}
		for i := range nets {
			n := &nets[i]
			if br := byName[n.Bridge]; br == nil {
				if err := e.bridge.EnsureNetwork(n.driverNet()); err != nil {
					return err
				}
				logf("recreated bridge %s of network %q", n.Bridge, n.Name)
			} else if what := e.bridgeDrift(br, n); what != "" {
				if err := e.bridge.EnsureNetwork(n.driverNet()); err != nil {
					return err
				}
				logf("repaired bridge %s of network %q: %s", n.Bridge, n.Name, what)
			}
		}
		for _, l := range links {
			if _, ok := l.(*netlink.Bridge); ok && strings.HasPrefix(l.Attrs().Alias, bridge.AliasPrefix) && ours[l.Attrs().Name] == nil {
				if err := netx.DeleteLink(e.host, l.Attrs().Name); err != nil {
					return err
				}
				logf("deleted bridge %s: no network owns it", l.Attrs().Name)
			}
		}

		// Endpoints: forget those whose namespace is gone.
		eps, err := listJSON[Endpoint](tx, store.Endpoints, "")
		if err != nil {
			return err
		}
		live := map[string]bool{}
		for i := range eps {
			ep := &eps[i]
			if netnsKeyOf(ep.NetNS) != ep.NetNSKey {
				if err := e.bridge.Leave(ep.driverEp(nil)); err != nil {
					return err
				}
				if err := forgetEndpoint(tx, ep); err != nil {
					return err
				}
				logf("released %s of %s on network %q: its namespace is gone", addrOf(ep), ep.Name, ep.Network)
				continue
			}
			live[ep.Key()] = true
			if byName[ep.HostIf] == nil {
				if err := e.rejoin(nets, ep); err != nil {
					return err
				}
				logf("reconnected %s to network %q: its veth %s was missing", ep.Name, ep.Network, ep.HostIf)
			} else if n := networkByID(nets, ep.NetworkID); n != nil && offBridge(byName, ep.HostIf, n.Bridge) {
				changed, err := e.bridge.Reattach(n.driverNet(), ep.driverEp(n))
				if err != nil {
					return err
				}
				if changed {
					logf("put veth %s of %s back on bridge %s", ep.HostIf, ep.Name, n.Bridge)
				}
			}
		}
		hostIfs := map[string]bool{}
		for _, ep := range eps {
			if live[ep.Key()] {
				hostIfs[ep.HostIf] = true
			}
		}
		bridgeIdx := map[int]bool{}
		for _, l := range links {
			if ours[l.Attrs().Name] != nil {
				bridgeIdx[l.Attrs().Index] = true
			}
		}
		for _, l := range links {
			a := l.Attrs()
			if _, ok := l.(*netlink.Veth); ok && bridgeIdx[a.MasterIndex] && strings.HasPrefix(a.Name, "veth") && !hostIfs[a.Name] && !reclaiming(tx, a.Name) {
				if err := netx.DeleteLink(e.host, a.Name); err != nil {
					return err
				}
				logf("deleted veth %s: no endpoint owns it", a.Name)
			}
		}

		if err := prune(tx, store.Meta, reclaimPrefix, func(k string, _ []byte) bool {
			return byName[strings.TrimPrefix(k, reclaimPrefix)] == nil
		}, nil); err != nil {
			return err
		}

		// Leases and bookkeeping that nothing owns any more.
		if err := prune(tx, store.Leases, "", func(_ string, v []byte) bool { return !live[string(v)] },
			func(k string) { logf("released lease %s: no endpoint holds it", k) }); err != nil {
			return err
		}
		owners := map[string]bool{}
		for _, ep := range eps {
			if live[ep.Key()] && ep.Container != "" {
				owners[ep.Container] = true
			}
		}
		if err := prune(tx, store.Ports, "", func(_ string, v []byte) bool { return !owners[string(v)] },
			func(k string) { logf("freed host port %s: no running container publishes it", k) }); err != nil {
			return err
		}
		netIDs := map[string]bool{}
		for _, n := range nets {
			netIDs[n.ID] = true
		}
		if err := prune(tx, store.Meta, "last/", func(k string, _ []byte) bool {
			id, _, _ := strings.Cut(strings.TrimPrefix(k, "last/"), "/")
			return !netIDs[id]
		}, nil); err != nil {
			return err
		}
		return tx.Put(store.Meta, bootKey, bootID())
	})
	if err != nil {
		return changes, err
	}
	if stale, err := e.dnsStale(); err != nil {
		return changes, err
	} else if stale {
		if err := e.publishDNS(false); err != nil {
			return changes, err
		}
		logf("embedded DNS: rewrote its records to match the containers")
	}
	return changes, nil
}

// prune deletes the keys under prefix that stale picks, telling each to
// logged (if set). Keys are collected first: a bucket must not change under
// its own cursor.
func prune(tx store.Tx, bucket, prefix string, stale func(string, []byte) bool, logged func(string)) error {
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

// rejoin recreates the veth pair of an endpoint whose namespace lives on,
// with the addresses it holds.
func (e *Engine) rejoin(nets []Network, ep *Endpoint) error {
	n := networkByID(nets, ep.NetworkID)
	if n == nil {
		return fmt.Errorf("endpoint %s: network %q is gone", ShortID(ep.ID), ep.Network)
	}
	ns, _, err := openNetNS(ep.NetNS)
	if err != nil {
		return err
	}
	defer ns.Close()
	ch, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return err
	}
	defer ch.Close()
	if err := netx.DeleteLink(ch, ep.IfName); err != nil { // a half of the pair left inside
		return err
	}
	return e.bridge.Join(n.driverNet(), ep.driverEp(n), ns)
}

// reclaimPrefix marks, in Meta, host veths of dropped namespaces that the
// kernel is still reclaiming in the background: not orphans to delete.
const reclaimPrefix = "reclaim/"

func markReclaim(tx store.Tx, hostIf string) error {
	return tx.Put(store.Meta, reclaimPrefix+hostIf, []byte(time.Now().UTC().Format(time.RFC3339)))
}

// reclaiming reports whether the kernel was left a veth to reclaim less than
// a minute ago.
func reclaiming(tx store.Tx, hostIf string) bool {
	t, err := time.Parse(time.RFC3339, string(tx.Get(store.Meta, reclaimPrefix+hostIf)))
	return err == nil && time.Since(t) < time.Minute
}

// offBridge reports whether a host veth is not (or may no longer be) a port
// of its bridge, from the links listed at the start of reconcile; a bridge
// made again since then is not in that list.
func offBridge(byName map[string]netlink.Link, hostIf, bridge string) bool {
	br := byName[bridge]
	return br == nil || byName[hostIf].Attrs().MasterIndex != br.Attrs().Index
}

// bridgeDrift says what of a network's bridge differs from the store: a
// gateway address gone, another MTU, down.
func (e *Engine) bridgeDrift(br netlink.Link, n *Network) string {
	if br.Attrs().MTU != n.MTU {
		return fmt.Sprintf("MTU %d instead of %d", br.Attrs().MTU, n.MTU)
	}
	if br.Attrs().Flags&net.FlagUp == 0 {
		return "it was down"
	}
	addrs, err := netx.Addrs(e.host, br)
	if err != nil {
		return ""
	}
	for _, gw := range n.driverNet().Gateways {
		found := false
		for _, a := range addrs {
			found = found || a.IPNet.String() == gw.String()
		}
		if !found {
			return "gateway address " + gw.String() + " was missing"
		}
	}
	return ""
}

func networkByID(nets []Network, id string) *Network {
	for i := range nets {
		if nets[i].ID == id {
			return &nets[i]
		}
	}
	return nil
}

func addrOf(ep *Endpoint) string {
	if p, err := netip.ParsePrefix(ep.IPv4); err == nil {
		return p.Addr().String()
	}
	if p, err := netip.ParsePrefix(ep.IPv6); err == nil {
		return p.Addr().String()
	}
	return "endpoint " + ShortID(ep.ID)
}

// reconcileContainers cleans containers that ended without anyone noticing
// (their monitor was killed, the host rebooted, ctnet crashed while creating
// them), and namespace pins that no container owns.
func (e *Engine) reconcileContainers(logf func(string, ...any)) error {
	// Pins are read before the containers: Run records a container before it
	// pins its namespace, so every pin seen here has its record in the list.
	dir := filepath.Join(e.cfg.RunRoot, "netns")
	entries, _ := os.ReadDir(dir)
	var cs []Container
	if err := e.store.View(func(tx store.Tx) error {
		var err error
		cs, err = listJSON[Container](tx, store.Containers, "")
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
		rt, err := e.runtimeFor(c.Runtime)
		if err != nil {
			return err
		}
		st, err := rt.State(c.ID)
		switch {
		case err == nil && st.Running:
			continue
		case err != nil || c.CreatorPID != 0 || c.AutoRemove:
			if err := e.removeContainer(rt, c); err != nil {
				return err
			}
			why := "it ended and was started with --rm"
			switch {
			case c.CreatorPID != 0:
				why = "its creation never finished"
			case err != nil:
				why = "its runtime state is gone"
			}
			logf("removed container %s (%s): %s", c.Name, ShortID(c.ID), why)
		case c.OwnNS && netnsKeyOf(c.NetNS) != "":
			if err := e.releaseNetwork(c); err != nil {
				return err
			}
			logf("released the network of container %s (%s): it has exited", c.Name, ShortID(c.ID))
		}
	}
	for _, de := range entries {
		p := filepath.Join(dir, de.Name())
		if !pins[p] {
			if err := nspin.Remove(p); err != nil {
				return err
			}
			logf("dropped namespace pin %s: no container owns it", p)
		}
	}
	return nil
}

// crashPoint ends the process abruptly, as a power cut would, when
// CTNET_CRASH_AT names this step. Fault-injection tests use it to prove that
// reconcile repairs a crash at every step.
func crashPoint(step string) {
	if os.Getenv("CTNET_CRASH_AT") == step {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
}
