// Package firewall is the only code in ctnet that writes nftables.
//
// It owns one table, inet ctnet, whose chains and rules never change after
// creation: networks and published ports are elements of its sets and maps,
// so attaching a container or publishing a port is one netlink batch of
// element updates whose cost does not grow with the number of ports.
//
// Three things the table cannot do and the caller must:
//   - Ports published on 127.0.0.1 are DNATed in the output hook and leave
//     with a loopback source; the kernel only routes that out of a bridge with
//     route_localnet=1 on it (see RouteLocalnetSysctl). The table masquerades
//     that traffic and drops new connections from containers to 127.0.0.0/8,
//     so the sysctl opens nothing else.
//   - ICC=false between ports of one bridge: bridged frames never reach an
//     inet hook unless br_netfilter is loaded. The bridge driver must set the
//     bridge-port flag "isolated" on every container's host-side veth
//     (netlink.LinkSetIsolated); isolated ports cannot reach each other but
//     still reach the bridge itself (the host). The table covers the routed
//     path and the br_netfilter case with noicc_bridges.
//   - Ports on [::1]: IPv6 has no route_localnet, so no rewrite of packets
//     can carry them to a container and back. The table leaves ::1 alone;
//     package loopback serves those ports by rewriting sockets.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// RouteLocalnetSysctl is the sysctl (in the namespace of the Firewall) that
// must be 1 for ports published on 127.0.0.1 to work from the host.
func RouteLocalnetSysctl(bridge string) string {
	return "/proc/sys/net/ipv4/conf/" + bridge + "/route_localnet"
}

// Firewall programs the ctnet table of one network namespace.
type Firewall struct {
	mu    sync.Mutex
	nsFd  int
	ownFd bool
	conn  *nftables.Conn
}

// Option configures New.
type Option func(*Firewall)

// WithNetNS makes the Firewall act on the network namespace open as fd
// (the caller keeps ownership of fd) instead of the calling thread's.
func WithNetNS(fd int) Option { return func(f *Firewall) { f.nsFd = fd } }

// New returns a Firewall for the network namespace of the calling thread (or
// the one given WithNetNS). It does not talk to the kernel yet.
func New(opts ...Option) (*Firewall, error) {
	f := &Firewall{nsFd: -1}
	for _, o := range opts {
		o(f)
	}
	if f.nsFd < 0 {
		// Pin the namespace now, so later calls from other threads act on the same one.
		fd, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return nil, fmt.Errorf("firewall: open current network namespace: %w", err)
		}
		f.nsFd, f.ownFd = fd, true
	}
	return f, nil
}

// Close releases the netlink socket and the namespace handle.
func (f *Firewall) Close() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	var errs []error
	if f.conn != nil {
		errs = append(errs, f.conn.CloseLasting())
		f.conn = nil
	}
	if f.ownFd && f.nsFd >= 0 {
		errs = append(errs, unix.Close(f.nsFd))
		f.nsFd = -1
	}
	return errors.Join(errs...)
}

func (f *Firewall) connLocked() (*nftables.Conn, error) {
	if f.conn != nil {
		return f.conn, nil
	}
	if f.nsFd < 0 {
		return nil, errors.New("firewall: closed")
	}
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(f.nsFd))
	if err != nil {
		return nil, fmt.Errorf("firewall: netlink: %w", err)
	}
	f.conn = c
	return c, nil
}

// discard drops the connection with whatever is queued on it, so that a
// half-built batch is never sent by a later Flush.
func (f *Firewall) discard() {
	if f.conn != nil {
		_ = f.conn.CloseLasting()
		f.conn = nil
	}
}

func specSet(name string) *nftables.Set {
	for _, s := range setSpecs {
		if s.name == name {
			return s.set()
		}
	}
	panic("firewall: unknown set " + name)
}

func queue(c *nftables.Conn, sets map[string]*nftables.Set, add bool, els []element) error {
	bySet := map[string][]nftables.SetElement{}
	var order []string
	for _, e := range els {
		if _, ok := bySet[e.set]; !ok {
			order = append(order, e.set)
		}
		bySet[e.set] = append(bySet[e.set], nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Val: e.val})
	}
	for _, name := range order {
		s := sets[name]
		if s == nil {
			s = specSet(name)
		}
		var err error
		if add {
			err = c.SetAddElements(s, bySet[name])
		} else {
			err = c.SetDeleteElements(s, bySet[name])
		}
		if err != nil {
			return fmt.Errorf("set %s: %w", name, err)
		}
	}
	return nil
}

// ErrNoTable says ctnet's table is gone (someone deleted it). Adding elements
// then would bring back a table that holds only them; Ensure with the whole
// state is the repair.
var ErrNoTable = errors.New("table inet " + TableName + " is missing (deleted behind ctnet's back?); `ctnet system reconcile` rebuilds it")

// add queues els and flushes; if the table is missing it changes nothing and
// says so with ErrNoTable.
func (f *Firewall) add(els []element) error {
	c, err := f.connLocked()
	if err != nil {
		return err
	}
	if err := queue(c, nil, true, els); err != nil {
		f.discard()
		return err
	}
	ferr := c.Flush()
	if ferr == nil {
		return nil
	}
	present, err := tablePresent(c)
	if err != nil {
		return errors.Join(ferr, err)
	}
	if present {
		return ferr
	}
	return ErrNoTable
}

// del removes els; elements (or the table) already gone are not errors.
func (f *Firewall) del(els []element) error {
	c, err := f.connLocked()
	if err != nil {
		return err
	}
	// Adding first makes the delete of a missing element succeed, all in one
	// transaction; an existing identical element is left alone by the add.
	if err := queue(c, nil, true, els); err != nil {
		f.discard()
		return err
	}
	if err := queue(c, nil, false, els); err != nil {
		f.discard()
		return err
	}
	ferr := c.Flush()
	if ferr == nil {
		return nil
	}
	present, err := tablePresent(c)
	if err != nil || !present {
		return err
	}
	// A map key held with another value: delete by key, whatever it maps to.
	var gone []element
	for _, name := range setNames(els) {
		cur, err := c.GetSetElements(specSet(name))
		if err != nil {
			return errors.Join(ferr, fmt.Errorf("set %s: list: %w", name, err))
		}
		for _, e := range els {
			for _, ce := range cur {
				if e.set == name && bytes.Equal(ce.Key, e.key) {
					gone = append(gone, element{set: name, key: ce.Key, keyEnd: ce.KeyEnd, val: ce.Val})
				}
			}
		}
	}
	if err := queue(c, nil, false, gone); err != nil {
		f.discard()
		return err
	}
	return c.Flush()
}

func setNames(els []element) []string {
	seen := map[string]bool{}
	var names []string
	for _, e := range els {
		if !seen[e.set] {
			seen[e.set] = true
			names = append(names, e.set)
		}
	}
	return names
}

// AddNetwork adds the network's elements in one batch (ErrNoTable if the
// table is missing: Ensure makes it).
func (f *Firewall) AddNetwork(n Network) error {
	els, err := n.elements()
	if err != nil {
		return err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.add(els); err != nil {
		return fmt.Errorf("firewall: add network on %s: %w", n.Bridge, err)
	}
	return nil
}

// DelNetwork removes the network's elements in one batch; missing ones are not errors.
func (f *Firewall) DelNetwork(n Network) error {
	els, err := n.elements()
	if err != nil {
		return err
	}
	// Remove the bridge from every network set, whatever flags it was added with.
	br := els[0].key
	var subnets []element
	for _, e := range els {
		if e.keyEnd != nil {
			subnets = append(subnets, e)
		}
	}
	els = append(append(els[:2:2],
		element{set: setMasq, key: br}, element{set: setInternal, key: br}, element{set: setNoICC, key: br}),
		subnets...)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.del(els); err != nil {
		return fmt.Errorf("firewall: delete network on %s: %w", n.Bridge, err)
	}
	return nil
}

// Publish adds ports (typically one container's) in one batch (ErrNoTable if
// the table is missing: Ensure makes it). Publishing an existing identical port is a no-op; a host
// port already mapped elsewhere is an error and changes nothing.
func (f *Firewall) Publish(ports []Port) error {
	els, err := portElements(ports)
	if err != nil {
		return fmt.Errorf("firewall: publish: %w", err)
	}
	if err := checkDuplicates(els, ports); err != nil {
		return fmt.Errorf("firewall: publish: %w", err)
	}
	if len(els) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.add(els); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.EBUSY) {
			return fmt.Errorf("firewall: publish %v: a host port is already published to another address: %w", ports, err)
		}
		return fmt.Errorf("firewall: publish %v: %w", ports, err)
	}
	return nil
}

// Unpublish removes exactly the elements of ports; missing ones are not errors.
func (f *Firewall) Unpublish(ports []Port) error {
	els, err := portElements(ports)
	if err != nil {
		return fmt.Errorf("firewall: unpublish: %w", err)
	}
	if len(els) == 0 {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.del(els); err != nil {
		return fmt.Errorf("firewall: unpublish %v: %w", ports, err)
	}
	return nil
}

func checkDuplicates(els []element, ports []Port) error {
	seen := map[string]int{}
	for i, e := range els {
		if j, ok := seen[e.id()]; ok && !bytes.Equal(els[j].val, e.val) {
			return fmt.Errorf("ports %s and %s use the same host port", ports[j], ports[i])
		}
		seen[e.id()] = i
	}
	return nil
}

// Present reports whether the table is there with exactly ctnet's layout.
func (f *Firewall) Present() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.connLocked()
	if err != nil {
		return false, err
	}
	problem, err := inspect(c)
	if err != nil {
		return false, fmt.Errorf("firewall: inspect table inet %s: %w", TableName, err)
	}
	return problem == "", nil
}

// Ensure makes the table exactly what nets and ports describe, in one batch:
// the layout is (re)built if missing or altered, and elements are added or
// removed to match. It returns a short description of each change.
func (f *Firewall) Ensure(nets []Network, ports []Port) ([]string, error) {
	want, err := networkElements(nets)
	if err != nil {
		return nil, fmt.Errorf("firewall: ensure: %w", err)
	}
	pe, err := portElements(ports)
	if err != nil {
		return nil, fmt.Errorf("firewall: ensure: %w", err)
	}
	if err := checkDuplicates(pe, ports); err != nil {
		return nil, fmt.Errorf("firewall: ensure: %w", err)
	}
	want = dedup(append(want, pe...))

	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.connLocked()
	if err != nil {
		return nil, err
	}
	problem, err := inspect(c)
	if err != nil {
		return nil, fmt.Errorf("firewall: ensure: inspect table inet %s: %w", TableName, err)
	}
	var changes []string
	if problem != "" {
		// Add before delete so the delete cannot fail; the batch swaps the
		// whole table atomically and conntrack keeps existing NAT bindings.
		c.AddTable(table)
		c.DelTable(table)
		sets, err := addLayout(c)
		if err == nil {
			err = queue(c, sets, true, want)
		}
		if err == nil {
			err = c.Flush()
		} else {
			f.discard()
		}
		if err != nil {
			return nil, fmt.Errorf("firewall: ensure: create table inet %s: %w", TableName, err)
		}
		if problem == problemMissing {
			changes = append(changes, "created table inet "+TableName)
		} else {
			changes = append(changes, fmt.Sprintf("rebuilt table inet %s (%s)", TableName, problem))
		}
		return append(changes, countChanges("added", want)...), nil
	}

	var add, del []element
	wantBySet := map[string]map[string]element{}
	for _, e := range want {
		if wantBySet[e.set] == nil {
			wantBySet[e.set] = map[string]element{}
		}
		wantBySet[e.set][string(e.key)] = e
	}
	for _, s := range setSpecs {
		cur, err := c.GetSetElements(specSet(s.name))
		if err != nil {
			return nil, fmt.Errorf("firewall: ensure: set %s: list: %w", s.name, err)
		}
		have := map[string]bool{}
		for _, ce := range cur {
			have[string(ce.Key)] = true
			w, ok := wantBySet[s.name][string(ce.Key)]
			same := ok && bytes.Equal(w.val, ce.Val) && bytes.Equal(w.keyEnd, ce.KeyEnd)
			if !same {
				del = append(del, element{set: s.name, key: ce.Key, keyEnd: ce.KeyEnd, val: ce.Val})
			}
			if ok && !same {
				add = append(add, w)
			}
		}
		for k, w := range wantBySet[s.name] {
			if !have[k] {
				add = append(add, w)
			}
		}
	}
	if len(add) == 0 && len(del) == 0 {
		return nil, nil
	}
	sortElements(add)
	sortElements(del)
	err = queue(c, nil, false, del)
	if err == nil {
		err = queue(c, nil, true, add)
	}
	if err == nil {
		err = c.Flush()
	} else {
		f.discard()
	}
	if err != nil {
		return nil, fmt.Errorf("firewall: ensure: update elements: %w", err)
	}
	return append(countChanges("removed", del), countChanges("added", add)...), nil
}

func dedup(els []element) []element {
	seen := map[string]bool{}
	out := els[:0]
	for _, e := range els {
		if !seen[e.id()] {
			seen[e.id()] = true
			out = append(out, e)
		}
	}
	return out
}

func sortElements(els []element) {
	sort.Slice(els, func(i, j int) bool { return els[i].id() < els[j].id() })
}

func countChanges(verb string, els []element) []string {
	var nets, ports int
	for _, e := range els {
		if isPortSet(e.set) {
			ports++
		} else {
			nets++
		}
	}
	var out []string
	if nets > 0 {
		out = append(out, fmt.Sprintf("%s %d network %s", verb, nets, plural(nets)))
	}
	if ports > 0 {
		out = append(out, fmt.Sprintf("%s %d port %s", verb, ports, plural(ports)))
	}
	return out
}

func isPortSet(name string) bool {
	for _, s := range setSpecs {
		if s.name == name {
			return s.kind == kindPort
		}
	}
	return false
}

func plural(n int) string {
	if n == 1 {
		return "element"
	}
	return "elements"
}

const problemMissing = "missing"

func tablePresent(c *nftables.Conn) (bool, error) {
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == TableName {
			return true, nil
		}
	}
	return false, nil
}

// inspect compares the kernel's table with the layout and returns "" when it
// matches, or what differs.
func inspect(c *nftables.Conn) (string, error) {
	present, err := tablePresent(c)
	if err != nil || !present {
		return problemMissing, err
	}
	chains, err := c.ListChainsOfTableFamily(nftables.TableFamilyINet)
	if err != nil {
		return "", fmt.Errorf("list chains: %w", err)
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == TableName {
			have[ch.Name] = ch
		}
	}
	if len(have) != len(chainSpecs) {
		return fmt.Sprintf("%d chains, want %d", len(have), len(chainSpecs)), nil
	}
	for _, cs := range chainSpecs {
		ch := have[cs.name]
		if ch == nil {
			return "chain " + cs.name + " missing", nil
		}
		if ch.Type != cs.typ || !eqPtr(ch.Hooknum, cs.hook) || !eqPtr(ch.Priority, cs.prio) || !eqPtr(ch.Policy, cs.policy) {
			return "chain " + cs.name + " altered", nil
		}
		rules, err := c.GetRules(table, ch)
		if err != nil {
			return "", fmt.Errorf("chain %s: list rules: %w", cs.name, err)
		}
		if len(rules) != len(cs.rules) {
			return fmt.Sprintf("chain %s has %d rules, want %d", cs.name, len(rules), len(cs.rules)), nil
		}
		for i, r := range rules {
			if got, _ := userdata.GetString(r.UserData, userdata.TypeComment); got != cs.rules[i].comment {
				return fmt.Sprintf("chain %s rule %d altered", cs.name, i+1), nil
			}
		}
	}
	sets, err := c.GetSets(table)
	if err != nil {
		return "", fmt.Errorf("list sets: %w", err)
	}
	if len(sets) != len(setSpecs) {
		return fmt.Sprintf("%d sets, want %d", len(sets), len(setSpecs)), nil
	}
	for _, s := range sets {
		if !setMatches(s) {
			return "set " + s.Name + " altered", nil
		}
	}
	return "", nil
}

func setMatches(s *nftables.Set) bool {
	for _, spec := range setSpecs {
		if spec.name != s.Name {
			continue
		}
		want := spec.set()
		return s.IsMap == want.IsMap && s.Interval == want.Interval &&
			s.KeyType.GetNFTMagic() == want.KeyType.GetNFTMagic() && s.KeyType.Bytes == want.KeyType.Bytes &&
			(!want.IsMap || (s.DataType.GetNFTMagic() == want.DataType.GetNFTMagic() && s.DataType.Bytes == want.DataType.Bytes))
	}
	return false
}

func eqPtr[T comparable](a, b *T) bool {
	if a == nil || b == nil {
		return a == b
	}
	return *a == *b
}
