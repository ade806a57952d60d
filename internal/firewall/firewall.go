// Package firewall is the only code in ctnet that writes nftables.
//
// It owns two tables whose chains and rules never change after creation:
// inet ctnet (NAT, published ports, isolation, what reaches the host) and
// bridge ctnet (what a container may put on its bridge, seen before the
// bridge forwards a frame to a sibling or hands it to the host). Networks,
// endpoints and published ports are elements of their sets and maps, so
// attaching a container or publishing a port is one netlink batch of
// element updates whose cost does not grow with the number of them.
//
// What the tables do not do, and the caller must:
//   - Ports published on 127.0.0.1 are DNATed in the output hook and leave
//     with a loopback source; the kernel only routes that out of a bridge with
//     route_localnet=1 on it (see RouteLocalnetSysctl). The tables masquerade
//     that traffic and drop anything else from containers that carries a
//     loopback address, so the sysctl opens nothing else.
//   - ICC=false between ports of one bridge: bridged frames never reach an
//     inet hook unless br_netfilter is loaded. The bridge driver must set the
//     bridge-port flag "isolated" on every container's host-side veth
//     (netlink.LinkSetIsolated); isolated ports cannot reach each other but
//     still reach the bridge itself (the host). The table covers the routed
//     path and the br_netfilter case with noicc_bridges.
//   - Ports on [::1]: IPv6 has no route_localnet, so no rewrite of packets
//     can carry them to a container and back. The table leaves ::1 alone;
//     package loopback serves those ports by rewriting sockets.
//   - Endpoints: the bridge table knows a container's port by its name only
//     (the kernel may lack `meta ibrname`), so frames from a port that is not
//     an endpoint are not checked at all. AddEndpoint before the veth exists,
//     DelEndpoint after it is gone, and every endpoint in Ensure.
//   - Router advertisements: the bridge table drops those of containers;
//     accept_ra=0 on the bridges and on both veth ends (AcceptRASysctl) keeps
//     the host and containers from taking any other.
package firewall

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
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

// AcceptRASysctl is the sysctl (in the namespace of the interface) that
// must be 0 on bridges and veth ends: no router advertisements taken there.
func AcceptRASysctl(ifname string) string {
	return "/proc/sys/net/ipv6/conf/" + ifname + "/accept_ra"
}

// Firewall programs ctnet's tables of one network namespace.
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

// queue queues els on c, grouped by set; s holds the sets made in the same
// batch (nil when the tables exist already).
func queue(c *nftables.Conn, s sets, add bool, els []element) error {
	bySet := map[*setSpec][]nftables.SetElement{}
	var order []*setSpec
	for _, e := range els {
		if _, ok := bySet[e.set]; !ok {
			order = append(order, e.set)
		}
		bySet[e.set] = append(bySet[e.set], nftables.SetElement{Key: e.key, KeyEnd: e.keyEnd, Val: e.val})
	}
	for _, spec := range order {
		set := s[spec]
		if set == nil {
			set = spec.set()
		}
		var err error
		if add {
			err = c.SetAddElements(set, bySet[spec])
		} else {
			err = c.SetDeleteElements(set, bySet[spec])
		}
		if err != nil {
			return fmt.Errorf("set %s %s: %w", tableName(spec.table), spec.name, err)
		}
	}
	return nil
}

// ErrNoTable says one of ctnet's tables is gone (someone deleted it). Adding
// elements then would bring back a table that holds only them; Ensure with
// the whole state is the repair.
var ErrNoTable = errors.New("ctnet's nftables table is missing (deleted behind ctnet's back?); `ctnet system reconcile` rebuilds it")

func tablesOf(els []element) []*nftables.Table {
	var ts []*nftables.Table
	for _, e := range els {
		if !slices.Contains(ts, e.set.table) {
			ts = append(ts, e.set.table)
		}
	}
	return ts
}

// missingTables returns those of ts that are not in the kernel.
func missingTables(c *nftables.Conn, ts []*nftables.Table) ([]*nftables.Table, error) {
	var missing []*nftables.Table
	for _, t := range ts {
		ok, err := tablePresent(c, t)
		if err != nil {
			return nil, err
		}
		if !ok {
			missing = append(missing, t)
		}
	}
	return missing, nil
}

// maxBatch bounds the elements of one netlink batch: the kernel takes a
// batch in one socket buffer, so thousands of ports (a range of 2000) are
// sent in parts.
const maxBatch = 256

// add queues els and flushes, in parts of maxBatch; if a table is missing it
// changes nothing and says so with ErrNoTable. A part that fails takes the
// parts before it back: all of els, or nothing.
func (f *Firewall) add(els []element) error {
	for start := 0; start < len(els); start += maxBatch {
		if err := f.addBatch(els[start:min(start+maxBatch, len(els))]); err != nil {
			if start > 0 {
				f.del(els[:start])
			}
			return err
		}
	}
	return nil
}

func (f *Firewall) addBatch(els []element) error {
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
	// A failed batch may leave replies unread on the socket: start afresh.
	f.discard()
	if c, err = f.connLocked(); err != nil {
		return errors.Join(ferr, err)
	}
	missing, err := missingTables(c, tablesOf(els))
	if err != nil {
		return errors.Join(ferr, err)
	}
	if len(missing) == 0 {
		return ferr
	}
	return fmt.Errorf("table %s: %w", tableName(missing[0]), ErrNoTable)
}

// delBatch removes els in one transaction. Adding first makes the delete of
// a missing element succeed; an existing identical element is left alone by
// the add.
func (f *Firewall) delBatch(c *nftables.Conn, els []element) error {
	if err := queue(c, nil, true, els); err != nil {
		f.discard()
		return err
	}
	if err := queue(c, nil, false, els); err != nil {
		f.discard()
		return err
	}
	return c.Flush()
}

// del removes els, in parts of maxBatch; elements (or tables) already gone
// are not errors. It goes on past a part that fails and reports the first
// failure.
func (f *Firewall) del(els []element) error {
	var first error
	for start := 0; start < len(els); start += maxBatch {
		if err := f.delPart(els[start:min(start+maxBatch, len(els))]); err != nil && first == nil {
			first = err
		}
	}
	return first
}

func (f *Firewall) delPart(els []element) error {
	c, err := f.connLocked()
	if err != nil {
		return err
	}
	ferr := f.delBatch(c, els)
	if ferr == nil {
		return nil
	}
	// A failed batch may leave replies unread on the socket: start afresh.
	f.discard()
	if c, err = f.connLocked(); err != nil {
		return errors.Join(ferr, err)
	}
	missing, err := missingTables(c, tablesOf(els))
	if err != nil {
		return errors.Join(ferr, err)
	}
	if len(missing) > 0 {
		els = slices.DeleteFunc(slices.Clone(els), func(e element) bool { return slices.Contains(missing, e.set.table) })
		if len(els) == 0 {
			return nil
		}
		if ferr = f.delBatch(c, els); ferr == nil {
			return nil
		}
		f.discard()
		if c, err = f.connLocked(); err != nil {
			return errors.Join(ferr, err)
		}
	}
	// A map key held with another value: delete by key, whatever it maps to.
	var gone []element
	for _, spec := range setsOf(els) {
		cur, err := c.GetSetElements(spec.set())
		if err != nil {
			return errors.Join(ferr, fmt.Errorf("set %s %s: list: %w", tableName(spec.table), spec.name, err))
		}
		for _, e := range els {
			for _, ce := range cur {
				if e.set == spec && bytes.Equal(ce.Key, e.key) {
					gone = append(gone, element{set: spec, key: ce.Key, keyEnd: ce.KeyEnd, val: ce.Val})
				}
			}
		}
	}
	if err := queue(c, nil, false, gone); err != nil {
		f.discard()
		return err
	}
	if err := c.Flush(); err != nil {
		f.discard()
		return err
	}
	return nil
}

func setsOf(els []element) []*setSpec {
	var specs []*setSpec
	for _, e := range els {
		if !slices.Contains(specs, e.set) {
			specs = append(specs, e.set)
		}
	}
	return specs
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
	els = els[:2:2]
	for _, s := range networkFlagSets {
		els = append(els, element{set: s, key: br})
	}
	els = append(els, subnets...)
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.del(els); err != nil {
		return fmt.Errorf("firewall: delete network on %s: %w", n.Bridge, err)
	}
	return nil
}

// AddEndpoint binds the endpoint's port to its MAC and addresses (unless n
// allows spoofing) and guards it, in one batch (ErrNoTable if the table is
// missing: Ensure makes it). n is the endpoint's network. Elements are keyed
// by the port's name, so they may be added before the veth exists, and
// should be: frames from a port that is no endpoint are not checked at all.
func (f *Firewall) AddEndpoint(n Network, ep Endpoint) error {
	els, err := ep.elements(n)
	if err != nil {
		return fmt.Errorf("firewall: add %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.add(els); err != nil {
		return fmt.Errorf("firewall: add %s: %w", ep, err)
	}
	return nil
}

// DelEndpoint removes the elements of ep (as AddEndpoint got it) in one
// batch; missing ones are not errors. Ensure removes any other.
func (f *Firewall) DelEndpoint(ep Endpoint) error {
	els, err := ep.elements(Network{Bridge: ep.Bridge})
	if err != nil {
		return fmt.Errorf("firewall: delete %w", err)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.del(els); err != nil {
		return fmt.Errorf("firewall: delete %s: %w", ep, err)
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
			return fmt.Errorf("firewall: publish %s: a host port is already published to another address: %w", describePorts(ports), err)
		}
		return fmt.Errorf("firewall: publish %s: %w", describePorts(ports), err)
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
		return fmt.Errorf("firewall: unpublish %s: %w", describePorts(ports), err)
	}
	return nil
}

// describePorts names ports in an error: all of a few, the span of many.
func describePorts(ports []Port) string {
	if len(ports) <= 3 {
		return fmt.Sprint(ports)
	}
	return fmt.Sprintf("%d ports [%s … %s]", len(ports), ports[0], ports[len(ports)-1])
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

// Present reports whether every table is there with exactly ctnet's layout.
func (f *Firewall) Present() (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.connLocked()
	if err != nil {
		return false, err
	}
	for _, ts := range tableSpecs {
		problem, err := ts.inspect(c)
		if err != nil {
			return false, fmt.Errorf("firewall: inspect table %s: %w", tableName(ts.table), err)
		}
		if problem != "" {
			return false, nil
		}
	}
	return true, nil
}

// Ensure makes the tables exactly what nets, eps and ports describe, in one
// batch: a table is (re)built if missing or altered, and elements are added
// or removed to match. Each endpoint's network is the one on its bridge. It
// returns a short description of each change.
func (f *Firewall) Ensure(nets []Network, eps []Endpoint, ports []Port) ([]string, error) {
	want, err := networkElements(nets)
	if err != nil {
		return nil, fmt.Errorf("firewall: ensure: %w", err)
	}
	ee, err := endpointElements(nets, eps)
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
	want = dedup(append(append(want, ee...), pe...))

	f.mu.Lock()
	defer f.mu.Unlock()
	c, err := f.connLocked()
	if err != nil {
		return nil, err
	}
	var rebuilt, added, removed []element
	var changes []string
	for _, ts := range tableSpecs {
		var mine []element
		for _, e := range want {
			if e.set.table == ts.table {
				mine = append(mine, e)
			}
		}
		problem, err := ts.inspect(c)
		if err != nil {
			f.discard()
			return nil, fmt.Errorf("firewall: ensure: inspect table %s: %w", tableName(ts.table), err)
		}
		if problem != "" {
			// Add before delete so the delete cannot fail; the batch swaps the
			// whole table atomically and conntrack keeps existing NAT bindings.
			c.AddTable(ts.table)
			c.DelTable(ts.table)
			s, err := ts.addLayout(c)
			if err == nil {
				err = queue(c, s, true, mine)
			}
			if err != nil {
				f.discard()
				return nil, fmt.Errorf("firewall: ensure: create table %s: %w", tableName(ts.table), err)
			}
			if problem == problemMissing {
				changes = append(changes, "created table "+tableName(ts.table))
			} else {
				changes = append(changes, fmt.Sprintf("rebuilt table %s (%s)", tableName(ts.table), problem))
			}
			rebuilt = append(rebuilt, mine...)
			continue
		}
		add, del, err := diff(c, ts, mine)
		if err != nil {
			f.discard()
			return nil, fmt.Errorf("firewall: ensure: %w", err)
		}
		added, removed = append(added, add...), append(removed, del...)
	}
	err = queue(c, nil, false, removed)
	if err == nil {
		err = queue(c, nil, true, added)
	}
	if err != nil {
		f.discard()
		return nil, fmt.Errorf("firewall: ensure: update elements: %w", err)
	}
	if len(changes) == 0 && len(added) == 0 && len(removed) == 0 {
		return nil, nil
	}
	if err := c.Flush(); err != nil {
		return nil, fmt.Errorf("firewall: ensure: %w", err)
	}
	changes = append(changes, countChanges("added", rebuilt)...)
	return append(append(changes, countChanges("removed", removed)...), countChanges("added", added)...), nil
}

// diff compares the elements of an intact table with want (its elements).
func diff(c *nftables.Conn, ts *tableSpec, want []element) (add, del []element, err error) {
	wantBySet := map[*setSpec]map[string]element{}
	for _, e := range want {
		if wantBySet[e.set] == nil {
			wantBySet[e.set] = map[string]element{}
		}
		wantBySet[e.set][string(e.key)] = e
	}
	for _, spec := range ts.sets {
		cur, err := c.GetSetElements(spec.set())
		if err != nil {
			return nil, nil, fmt.Errorf("set %s %s: list: %w", tableName(spec.table), spec.name, err)
		}
		have := map[string]bool{}
		for _, ce := range cur {
			have[string(ce.Key)] = true
			w, ok := wantBySet[spec][string(ce.Key)]
			same := ok && bytes.Equal(w.val, ce.Val) && bytes.Equal(w.keyEnd, ce.KeyEnd)
			if !same {
				del = append(del, element{set: spec, key: ce.Key, keyEnd: ce.KeyEnd, val: ce.Val})
			}
			if ok && !same {
				add = append(add, w)
			}
		}
		for k, w := range wantBySet[spec] {
			if !have[k] {
				add = append(add, w)
			}
		}
	}
	sortElements(add)
	sortElements(del)
	return add, del, nil
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
	n := map[setKind]int{}
	for _, e := range els {
		n[e.set.kind]++
	}
	var out []string
	for _, k := range []setKind{kindNetwork, kindEndpoint, kindPort} {
		if n[k] > 0 {
			out = append(out, fmt.Sprintf("%s %d %s %s", verb, n[k], kindNames[k], plural(n[k])))
		}
	}
	return out
}

func plural(n int) string {
	if n == 1 {
		return "element"
	}
	return "elements"
}

const problemMissing = "missing"

func tablePresent(c *nftables.Conn, t *nftables.Table) (bool, error) {
	tables, err := c.ListTablesOfFamily(t.Family)
	if err != nil {
		return false, fmt.Errorf("list tables: %w", err)
	}
	for _, have := range tables {
		if have.Name == t.Name {
			return true, nil
		}
	}
	return false, nil
}

// inspect compares the kernel's table with the layout and returns "" when it
// matches, or what differs.
func (ts *tableSpec) inspect(c *nftables.Conn) (string, error) {
	present, err := tablePresent(c, ts.table)
	if err != nil || !present {
		return problemMissing, err
	}
	chains, err := c.ListChainsOfTableFamily(ts.table.Family)
	if err != nil {
		return "", fmt.Errorf("list chains: %w", err)
	}
	have := map[string]*nftables.Chain{}
	for _, ch := range chains {
		if ch.Table.Name == ts.table.Name {
			have[ch.Name] = ch
		}
	}
	if len(have) != len(ts.chains) {
		return fmt.Sprintf("%d chains, want %d", len(have), len(ts.chains)), nil
	}
	for _, cs := range ts.chains {
		ch := have[cs.name]
		if ch == nil {
			return "chain " + cs.name + " missing", nil
		}
		if ch.Type != cs.typ || !eqPtr(ch.Hooknum, cs.hook) || !eqPtr(ch.Priority, cs.prio) || !eqPtr(ch.Policy, cs.policy) {
			return "chain " + cs.name + " altered", nil
		}
		rules, err := c.GetRules(ts.table, ch)
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
	sets, err := c.GetSets(ts.table)
	if err != nil {
		return "", fmt.Errorf("list sets: %w", err)
	}
	if len(sets) != len(ts.sets) {
		return fmt.Sprintf("%d sets, want %d", len(sets), len(ts.sets)), nil
	}
	for _, s := range sets {
		if !ts.setMatches(s) {
			return "set " + s.Name + " altered", nil
		}
	}
	return "", nil
}

func (ts *tableSpec) setMatches(s *nftables.Set) bool {
	for _, spec := range ts.sets {
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
