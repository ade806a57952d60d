package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/store"
	"github.com/ctnet/ctnet/internal/store/etcd"
)

// fakeGlobal is the fake driver with global scope, whose Join makes the
// network's kernel side on first use, as the overlay does.
type fakeGlobal struct{ *fakeDriver }

func (d fakeGlobal) Name() string  { return "fakeov" }
func (d fakeGlobal) Scope() string { return driver.ScopeGlobal }

func (d fakeGlobal) PlanNetwork(n *driver.Network, others []driver.Network) error {
	if err := d.fakeDriver.PlanNetwork(n, others); err != nil {
		return err
	}
	n.Device = "ov-" + n.ID[:8]
	if _, ok := n.Options["vni"]; !ok {
		n.Options["vni"] = "4097"
	}
	return nil
}

func (d fakeGlobal) Claims(n driver.Network) []string { return []string{"VNI " + n.Options["vni"]} }

func (d fakeGlobal) Join(ctx context.Context, n driver.Network, ep driver.Endpoint, sb driver.Sandbox) error {
	d.mu.Lock()
	d.nets[n.Device] = true
	d.mu.Unlock()
	return d.fakeDriver.Join(ctx, n, ep, sb)
}

// testHost is one host of a cluster over a shared Memory store.
type testHost struct {
	*Service
	id string
	k  *fakeKernel
	d  *fakeDriver
}

func newCluster(t *testing.T, ids ...string) (*store.Memory, []*testHost) {
	t.Helper()
	st := store.NewMemory()
	st.Replay = true // kernel work inside a transaction would happen twice
	var hs []*testHost
	for _, id := range ids {
		k := newFakeKernel()
		d := newFakeDriver(k)
		s := New(Deps{Store: st, Kernel: k, Drivers: driver.NewRegistry(nil, d, fakeGlobal{d}), Lock: &MemLock{}, Host: id})
		hs = append(hs, &testHost{Service: s, id: id, k: k, d: d})
	}
	return st, hs
}

// register puts a host's record, as its agent would.
func (h *testHost) register(t *testing.T, st store.Store, addr string) {
	t.Helper()
	b, _ := json.Marshal(HostRecord{ID: h.id, Name: "host-" + h.id[:2], Addr: netip.MustParseAddr(addr)})
	if err := st.Update(func(tx store.Tx) error { return tx.Put(hostsBucket, h.id, b) }); err != nil {
		t.Fatal(err)
	}
}

func unregister(t *testing.T, st store.Store, id string) {
	t.Helper()
	if err := st.Update(func(tx store.Tx) error { return tx.Delete(hostsBucket, id) }); err != nil {
		t.Fatal(err)
	}
}

func keys(st *store.Memory, bucket string) []string {
	var out []string
	for k := range st.Dump() {
		if b, key, _ := strings.Cut(k, "/"); b == bucket {
			out = append(out, key)
		}
	}
	slices.Sort(out)
	return out
}

const (
	hostA = "aaaaaaaaaaaaaaaa"
	hostB = "bbbbbbbbbbbbbbbb"
)

func TestHostsShareOneStore(t *testing.T) {
	st, hs := newCluster(t, hostA, hostB)
	a, b := hs[0], hs[1]
	a.register(t, st, "198.51.100.11")
	b.register(t, st, "198.51.100.12")

	// Each host has its own default network, on the same subnet.
	nets := func(h *testHost) map[string]NetworkInfo {
		t.Helper()
		infos, err := h.Networks(ctx)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]NetworkInfo{}
		for _, n := range infos {
			out[n.Name] = n
		}
		return out
	}
	na, nb := nets(a), nets(b)
	if na["bridge"].ID == nb["bridge"].ID || na["bridge"].Subnets[0].Subnet != nb["bridge"].Subnets[0].Subnet {
		t.Errorf("default networks: %+v / %+v", na["bridge"].Network, nb["bridge"].Network)
	}
	if na["bridge"].Scope != "local" || na["bridge"].Host != hostA {
		t.Errorf("default network of A: scope %q host %q", na["bridge"].Scope, na["bridge"].Host)
	}

	ov, err := a.CreateNetwork(ctx, NetworkSpec{Name: "ov", Driver: "fakeov", Subnets: []SubnetSpec{{Subnet: "10.200.0.0/16"}}})
	if err != nil {
		t.Fatal(err)
	}
	if ov.Host != "" {
		t.Errorf("global network has host %q", ov.Host)
	}
	if _, err := a.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	nb = nets(b)
	if nb["ov"].Scope != "global" || nb["ov"].ID != ov.ID {
		t.Errorf("B sees ov as %+v", nb["ov"])
	}
	if _, ok := nb["web"]; ok {
		t.Errorf("B sees A's local network web")
	}
	// Local names are per host; a global name is everyone's.
	if _, err := b.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}}); err != nil {
		t.Errorf("B's own web on the same subnet: %v", err)
	}
	if _, err := b.CreateNetwork(ctx, NetworkSpec{Name: "web", Driver: "fakeov", Subnets: []SubnetSpec{{Subnet: "10.201.0.0/16"}}}); !errdefs.Is(err, errdefs.Conflict) {
		t.Errorf("global web over local ones: %v", err)
	}
	if _, err := b.CreateNetwork(ctx, NetworkSpec{Name: "ov", Subnets: []SubnetSpec{{Subnet: "10.202.0.0/16"}}}); !errdefs.Is(err, errdefs.Conflict) {
		t.Errorf("local ov beside the global one: %v", err)
	}
	if _, err := b.CreateNetwork(ctx, NetworkSpec{Name: "ov2", Subnets: []SubnetSpec{{Subnet: "10.200.5.0/24"}}}); !errdefs.Is(err, errdefs.Conflict) {
		t.Errorf("local subnet inside the global one's: %v", err)
	}
	if _, err := b.CreateNetwork(ctx, NetworkSpec{Name: "ov3", Driver: "fakeov", Subnets: []SubnetSpec{{Subnet: "10.203.0.0/16"}}}); err == nil || !strings.Contains(err.Error(), "VNI 4097 is already used by network \"ov\"") {
		t.Errorf("a second network with VNI 4097: %v", err)
	}

	// Attachments on the global network from both hosts: distinct
	// addresses, the same host port published on each.
	a.k.addNS("/ns/x")
	b.k.addNS("/ns/x") // the same path on another host is another namespace
	xa, err := a.Attach(ctx, AttachSpec{Network: "ov", NetNS: "/ns/x", Name: "xa", DNSNames: []string{"xa"}, Resolver: &Resolver{}, Ports: ports("8080:80")})
	if err != nil {
		t.Fatal(err)
	}
	xb, err := b.Attach(ctx, AttachSpec{Network: "ov", NetNS: "/ns/x", Name: "xb", DNSNames: []string{"xb"}, Resolver: &Resolver{}, Ports: ports("8080:80")})
	if err != nil {
		t.Fatal(err)
	}
	if xa.IPv4 == xb.IPv4 || xa.Host != hostA || xb.Host != hostB {
		t.Errorf("attachments %v on %s, %v on %s", xa.IPv4, xa.Host, xb.IPv4, xb.Host)
	}
	if got := keys(st, store.Ports); !slices.Equal(got, []string{hostA + "/tcp/8080/0.0.0.0", hostA + "/tcp/8080/::", hostB + "/tcp/8080/0.0.0.0", hostB + "/tcp/8080/::"}) {
		t.Errorf("ports: %v", got)
	}
	b.k.addNS("/ns/y")
	if _, err := b.Attach(ctx, AttachSpec{Network: "ov", NetNS: "/ns/y", Ports: ports("8080:80")}); err == nil || !strings.Contains(err.Error(), "already published") {
		t.Errorf("B's port 8080 twice: %v", err)
	}

	// Each host lists its own attachments; inspect shows every host's.
	if own, _ := b.Attachments(); len(own) != 1 || own[0].ID != xb.ID {
		t.Errorf("B's attachments: %+v", own)
	}
	info, err := b.Network(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	if len(info.Attachments) != 2 || info.Hosts[hostA].Addr.String() != "198.51.100.11" || info.Hosts[hostB].Name != "host-bb" {
		t.Errorf("inspect from B: %d attachments, hosts %+v", len(info.Attachments), info.Hosts)
	}
	if _, err := b.RemoveNetworks(ctx, "ov"); err == nil || !strings.Contains(err.Error(), "xa on host host-aa (198.51.100.11)") {
		t.Errorf("rm ov from B: %v", err)
	}

	// Names across hosts, namespaces of one's own.
	var snap struct {
		recs []string
		ns   []string
	}
	if err := st.View(func(tx store.Tx) error {
		s, err := b.dnsSnapshot(tx)
		for _, r := range s.Records {
			snap.recs = append(snap.recs, fmt.Sprintf("%s %s %v", r.Network, r.Name, r.Addrs))
		}
		for _, n := range s.Namespaces {
			snap.ns = append(snap.ns, n.Path)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	slices.Sort(snap.recs)
	if want := []string{fmt.Sprintf("ov xa [%s]", xa.IPv4.Addr()), fmt.Sprintf("ov xb [%s]", xb.IPv4.Addr())}; !slices.Equal(snap.recs, want) || !slices.Equal(snap.ns, []string{"/ns/x"}) {
		t.Errorf("B's resolver: records %v, namespaces %v", snap.recs, snap.ns)
	}

	// B's reconcile never releases A's attachment (A's namespace is not
	// B's to see); A's own does once the namespace is gone.
	if changes, err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	} else {
		for _, c := range changes {
			if strings.Contains(c, "xa") || strings.Contains(c, xa.IPv4.Addr().String()) {
				t.Errorf("B's reconcile touched A's attachment: %s", c)
			}
		}
	}
	if info, _ := a.Network(ctx, "ov"); len(info.Attachments) != 2 {
		t.Fatalf("after B's reconcile: %d attachments", len(info.Attachments))
	}
	a.k.dropNS("/ns/x")
	changes, err := a.Reconcile(ctx)
	if err != nil || len(changes) == 0 || !strings.Contains(strings.Join(changes, "\n"), "released "+xa.IPv4.Addr().String()+" of xa") {
		t.Errorf("A's reconcile after its namespace went: %v %q", err, changes)
	}
	if info, _ := b.Network(ctx, "ov"); len(info.Attachments) != 1 || info.Attachments[0].ID != xb.ID {
		t.Errorf("after A released xa: %+v", info.Attachments)
	}

	// Containers are per host.
	if err := a.Store().Update(func(tx store.Tx) error { return tx.Put(store.Containers, "c1", []byte(`{}`)) }); err != nil {
		t.Fatal(err)
	}
	var seen []string
	b.Store().View(func(tx store.Tx) error {
		return tx.ForEach(store.Containers, "", func(k string, _ []byte) error { seen = append(seen, k); return nil })
	})
	if len(seen) != 0 || !slices.Contains(keys(st, store.Containers), hostA+"/c1") {
		t.Errorf("B sees containers %v; store has %v", seen, keys(st, store.Containers))
	}
	a.Store().View(func(tx store.Tx) error {
		if tx.Get(store.Containers, "c1") == nil {
			t.Errorf("A does not find its own container")
		}
		return nil
	})

	// Boot markers are per host.
	if got := keys(st, store.Meta); !slices.Contains(got, hostA+"/boot") || !slices.Contains(got, hostB+"/boot") || slices.Contains(got, "boot") {
		t.Errorf("meta keys: %v", got)
	}
}

// TestAttachNeedsTheHostRecord: an attachment to a global network is only
// made while its host's record lives (others free a host's endpoints when
// its record is gone).
func TestAttachNeedsTheHostRecord(t *testing.T) {
	st, hs := newCluster(t, hostA)
	a := hs[0]
	if _, err := a.CreateNetwork(ctx, NetworkSpec{Name: "ov", Driver: "fakeov", Subnets: []SubnetSpec{{Subnet: "10.200.0.0/16"}}}); err != nil {
		t.Fatal(err)
	}
	a.k.addNS("/ns/x")
	before := st.Dump()
	kernel := a.d.kernel()
	if _, err := a.Attach(ctx, AttachSpec{Network: "ov", NetNS: "/ns/x"}); err == nil || !strings.Contains(err.Error(), "overlay agent") {
		t.Errorf("attach without the host's record: %v", err)
	}
	if after := st.Dump(); !maps.Equal(after, before) || a.d.kernel() != kernel {
		t.Errorf("a refused attach changed the store or the kernel")
	}
	// A local network needs no record.
	if _, err := a.Attach(ctx, AttachSpec{Network: "bridge", NetNS: "/ns/x"}); err != nil {
		t.Errorf("attach to the local default network: %v", err)
	}
}

// TestReapAndRestore: when a host's record expires the others free its
// global attachments; the host, back, takes back those nobody took.
func TestReapAndRestore(t *testing.T) {
	st, hs := newCluster(t, hostA, hostB)
	a, b := hs[0], hs[1]
	a.register(t, st, "198.51.100.11")
	b.register(t, st, "198.51.100.12")
	if _, err := a.CreateNetwork(ctx, NetworkSpec{Name: "ov", Driver: "fakeov", Subnets: []SubnetSpec{{Subnet: "10.200.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	var atts []*Attachment
	for i := range 20 { // more than one reap transaction's worth
		p := fmt.Sprintf("/ns/%d", i)
		a.k.addNS(p)
		at, err := a.Attach(ctx, AttachSpec{Network: "ov", NetNS: p, Name: fmt.Sprintf("c%d", i), Ports: ports(fmt.Sprintf("%d:80", 9000+i))})
		if err != nil {
			t.Fatal(err)
		}
		atts = append(atts, at)
	}
	a.k.addNS("/ns/local")
	local, err := a.Attach(ctx, AttachSpec{Network: "bridge", NetNS: "/ns/local"})
	if err != nil {
		t.Fatal(err)
	}

	// While A lives, nothing is freed.
	var lines []string
	logf := func(f string, args ...any) { lines = append(lines, fmt.Sprintf(f, args...)) }
	if err := b.reap(hostA, logf); err != nil || len(lines) != 0 {
		t.Fatalf("reap of a live host: %v %v", err, lines)
	}
	unregister(t, st, hostA)
	if err := b.reap(hostA, logf); err != nil {
		t.Fatal(err)
	}
	if len(lines) != 20 || !strings.Contains(lines[0], "host "+hostA+" is gone") {
		t.Errorf("reap said %d lines: %q", len(lines), lines)
	}
	for _, k := range keys(st, store.Endpoints) {
		if strings.HasPrefix(k, hostA+"/") && !strings.Contains(k, local.ID) {
			t.Errorf("A's global attachment %s still there", k)
		}
	}
	if got := keys(st, store.Ports); len(got) != 0 {
		t.Errorf("A's host ports still held: %v", got)
	}
	// Its addresses are free: B takes the first one.
	b.k.addNS("/ns/b")
	first := atts[0].IPv4.Addr().String()
	bt, err := b.Attach(ctx, AttachSpec{Network: "ov", NetNS: "/ns/b", IP: first})
	if err != nil {
		t.Fatalf("B takes %s: %v", first, err)
	}
	// The local attachment is A's own business.
	if info, _ := a.Network(ctx, "bridge"); len(info.Attachments) != 1 {
		t.Errorf("A's local attachment was freed too")
	}

	// A comes back: all but the first (taken) and the last (its namespace
	// went meanwhile) are taken back.
	a.register(t, st, "198.51.100.11")
	a.k.dropNS("/ns/19")
	lines = nil
	if err := a.restore(logf); err != nil {
		t.Fatal(err)
	}
	back, lost, forgot := 0, 0, 0
	for _, l := range lines {
		switch {
		case strings.HasPrefix(l, "took back"):
			back++
		case strings.HasPrefix(l, "lost "+first+" of c0"):
			lost++
		case strings.HasPrefix(l, "forgot ") && strings.Contains(l, "of c19") && strings.Contains(l, "namespace is gone"):
			forgot++
		default:
			t.Errorf("restore: %s", l)
		}
	}
	if back != 18 || lost != 1 || forgot != 1 {
		t.Errorf("restore: %d back, %d lost, %d forgot: %q", back, lost, forgot, lines)
	}
	info, err := a.Network(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	byAddr := map[string]string{}
	for _, at := range info.Attachments {
		if o, dup := byAddr[at.IPv4.String()]; dup {
			t.Errorf("%s given to %s and %s", at.IPv4, o, at.Name)
		}
		byAddr[at.IPv4.String()] = at.Name
	}
	if len(info.Attachments) != 19 || byAddr[bt.IPv4.String()] != bt.Name {
		t.Errorf("after restore: %v", byAddr)
	}
	if got := keys(st, store.Ports); len(got) != 36 { // 18 ports on 0.0.0.0 and ::
		t.Errorf("ports after restore: %v", got)
	}
	if m := keys(st, store.Meta); slices.ContainsFunc(m, func(k string) bool { return strings.HasPrefix(k, reapedPrefix) }) {
		t.Errorf("marks left: %v", m)
	}
}

// TestPendingOfAnotherHost: a network being created by one host is not
// another host's to settle.
func TestPendingOfAnotherHost(t *testing.T) {
	st, hs := newCluster(t, hostA, hostB)
	b := hs[1]
	n := Network{Name: "half", ID: NewID(), Driver: "fakeov", Pending: pendingCreate, PendingHost: hostA,
		Subnets: []Subnet{{Subnet: netip.MustParsePrefix("10.9.0.0/24")}}}
	if err := st.Update(func(tx store.Tx) error { return store.PutJSON(tx, store.Networks, n.Name, n) }); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(keys(st, store.Networks), "half") {
		t.Errorf("B settled A's network being created")
	}
	if _, err := hs[0].Reconcile(ctx); err != nil {
		t.Fatal(err)
	}
	if slices.Contains(keys(st, store.Networks), "half") {
		t.Errorf("A did not settle its own crashed creation")
	}
}

// TestConcurrentHosts: three hosts attach to one global network at once:
// every address once.
func TestConcurrentHosts(t *testing.T) {
	st, hs := newCluster(t, hostA, hostB, "cccccccccccccccc")
	for i, h := range hs {
		h.register(t, st, fmt.Sprintf("198.51.100.%d", 11+i))
	}
	if _, err := hs[0].CreateNetwork(ctx, NetworkSpec{Name: "ov", Driver: "fakeov", Subnets: []SubnetSpec{{Subnet: "10.200.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for _, h := range hs {
		for i := range 10 {
			p := fmt.Sprintf("/ns/%d", i)
			h.k.addNS(p)
			wg.Go(func() {
				if _, err := h.Attach(ctx, AttachSpec{Network: "ov", NetNS: p}); err != nil {
					t.Error(err)
				}
			})
		}
	}
	wg.Wait()
	info, err := hs[2].Network(ctx, "ov")
	if err != nil {
		t.Fatal(err)
	}
	seen := map[netip.Prefix]bool{}
	for _, at := range info.Attachments {
		if seen[at.IPv4] {
			t.Errorf("%s given twice", at.IPv4)
		}
		seen[at.IPv4] = true
	}
	if len(seen) != 30 || len(keys(st, store.Leases)) != 30 {
		t.Errorf("%d addresses, %d leases", len(seen), len(keys(st, store.Leases)))
	}
}

// TestSingleHostKeys: without a host id every key is as it always was.
func TestSingleHostKeys(t *testing.T) {
	ts := newTestService(true)
	ts.k.addNS("/ns/a")
	if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	a, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/a", Ports: ports("8080:80")})
	if err != nil {
		t.Fatal(err)
	}
	ts.Store().Update(func(tx store.Tx) error { return tx.Put(store.Containers, "c1", []byte(`{}`)) })
	want := []string{
		"containers/c1",
		"endpoints/ns:" + a.NetNSKey + "/" + a.ID,
		"leases/" + a.NetworkID + "/10.10.0.2",
		"meta/boot",
		"meta/last/" + a.NetworkID + "/10.10.0.0/24",
		"meta/mac/" + a.NetworkID + "/" + net.HardwareAddr(a.MAC).String(),
		"networks/bridge",
		"networks/web",
		"ports/tcp/8080/0.0.0.0",
		"ports/tcp/8080/::",
	}
	got := slices.Sorted(maps.Keys(ts.st.Dump()))
	got = slices.DeleteFunc(got, func(k string) bool { return strings.HasPrefix(k, "meta/last/") && !strings.Contains(k, a.NetworkID) })
	if !slices.Equal(got, want) {
		t.Errorf("keys:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for k, v := range ts.st.Dump() {
		if strings.Contains(v, `"Host"`) || strings.Contains(v, `"PendingHost"`) {
			t.Errorf("%s has a host field: %s", k, v)
		}
	}
}

// unsure is a store whose armed Update commits (or not) and then reports
// that its outcome is unknown, as etcd does when a commit's answer is lost.
type unsure struct {
	*store.Memory
	armed, apply bool
}

func (u *unsure) Update(fn func(store.Tx) error) error {
	if !u.armed {
		return u.Memory.Update(fn)
	}
	u.armed = false
	if u.apply {
		if err := u.Memory.Update(fn); err != nil {
			return err
		}
	}
	return fmt.Errorf("etcd at test: no answer: %w", etcd.ErrOutcomeUnknown)
}

// TestOutcomeUnknownIsReconciled: when the commit of an attachment may or
// may not have been made, the kernel side is left for reconcile, which
// keeps it (made) or undoes it (not made); it is never undone on a guess.
func TestOutcomeUnknownIsReconciled(t *testing.T) {
	for _, applied := range []bool{true, false} {
		t.Run(fmt.Sprintf("applied=%v", applied), func(t *testing.T) {
			mem := store.NewMemory()
			mem.Replay = true
			st := &unsure{Memory: mem}
			k := newFakeKernel()
			d := newFakeDriver(k)
			s := New(Deps{Store: st, Kernel: k, Drivers: driver.NewRegistry(nil, d), Lock: &MemLock{}, Host: hostA})
			if _, err := s.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}}); err != nil {
				t.Fatal(err)
			}
			k.addNS("/ns/a")
			// Plan, then the commit: the second Update of the attach.
			calls := 0
			st2 := &countingStore{Store: st, on: func() {
				if calls++; calls == 2 {
					st.armed, st.apply = true, applied
				}
			}}
			s.d.Store = st2
			if _, err := s.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/a"}); !errors.Is(err, etcd.ErrOutcomeUnknown) {
				t.Fatalf("attach: %v", err)
			}
			if !strings.Contains(d.kernel(), "ep ") {
				t.Fatalf("the kernel side was undone on a guess:\n%s", d.kernel())
			}
			s.d.Store = st
			changes, err := s.Reconcile(ctx)
			if err != nil {
				t.Fatal(err)
			}
			atts, _ := s.Attachments()
			switch {
			case applied && (len(atts) != 1 || !strings.Contains(d.kernel(), "ep ")):
				t.Errorf("made: reconcile lost it: %q, %v\n%s", changes, atts, d.kernel())
			case !applied && (len(atts) != 0 || strings.Contains(d.kernel(), "ep ") || len(keys(mem, store.Leases)) != 0):
				t.Errorf("not made: reconcile kept it: %q, %v\n%s", changes, atts, d.kernel())
			}
		})
	}
}

type countingStore struct {
	store.Store
	on func()
}

func (c *countingStore) Update(fn func(store.Tx) error) error {
	c.on()
	return c.Store.Update(fn)
}
