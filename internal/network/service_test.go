package network

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/errdefs"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/portspec"
	"github.com/ctnet/ctnet/internal/store"
)

var ctx = context.Background()

func ports(specs ...string) []portspec.Mapping {
	ms, err := portspec.ParseAll(specs)
	if err != nil {
		panic(err)
	}
	return ms
}

// state is everything the service and the fake kernel hold, for comparing.
func (ts *testService) state() string {
	var b strings.Builder
	dump := ts.st.Dump()
	for _, k := range slices.Sorted(maps.Keys(dump)) {
		if k == "meta/boot" || strings.HasPrefix(k, "meta/last/") {
			continue // bookkeeping: the next address to try
		}
		fmt.Fprintf(&b, "%s = %s\n", k, dump[k])
	}
	b.WriteString(ts.d.kernel())
	return b.String()
}

func TestLifecycle(t *testing.T) {
	ts := newTestService(false)
	ts.k.addNS("/ns/a")
	ts.k.addNS("/ns/b")
	n, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}})
	if err != nil {
		t.Fatal(err)
	}
	if n.Bridge != "fk-"+n.ID[:8] || n.Subnets[0].Gateway != netip.MustParseAddr("10.10.0.1") {
		t.Errorf("network %+v", n)
	}
	a, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/a", Aliases: []string{"db"}, Ports: ports("8080:80")})
	if err != nil {
		t.Fatal(err)
	}
	b, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/b"})
	if err != nil {
		t.Fatal(err)
	}
	if a.IPv4.String() != "10.10.0.2/24" || b.IPv4.String() != "10.10.0.3/24" || a.IfName != "eth0" || a.MAC.String() != "02:42:0a:0a:00:02" {
		t.Errorf("attachments %v %s %s, %v", a.IPv4, a.IfName, a.MAC, b.IPv4)
	}
	// Every address is 0.0.0.0 and ::, as Docker publishes on an IPv4-only network.
	if len(a.Ports) != 2 || a.Ports[0].HostPort != 8080 || a.Ports[1].HostIP != netip.IPv6Unspecified() || a.Owner != NetNS(ts.k.NamespaceKey("/ns/a")) {
		t.Errorf("ports %v owner %v", a.Ports, a.Owner)
	}
	if _, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/b", Ports: ports("8080:80")}); !errdefs.Is(err, errdefs.Conflict) {
		t.Errorf("second attach of /ns/b: %v", err)
	}
	ts.k.addNS("/ns/c")
	if _, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/c", Ports: ports("8080:80")}); err == nil || !strings.Contains(err.Error(), "already published by namespace /ns/a") {
		t.Errorf("port conflict: %v", err)
	}
	if _, err := ts.RemoveNetworks(ctx, "web"); err == nil || !strings.Contains(err.Error(), "has active endpoints (/ns/a, /ns/b)") {
		t.Errorf("rm of a used network: %v", err)
	}
	k := ts.d.kernel()
	if !strings.Contains(k, "port tcp 0.0.0.0:8080->80") && !strings.Contains(k, "8080") {
		t.Errorf("kernel has no published port:\n%s", k)
	}
	for _, p := range []string{"/ns/a", "/ns/b"} {
		if err := ts.DetachNamespace(ctx, "web", p); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.DetachNamespace(ctx, "web", "/ns/a"); !errdefs.Is(err, errdefs.NotFound) {
		t.Errorf("second detach: %v", err)
	}
	if _, err := ts.RemoveNetworks(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if got := ts.d.kernel(); got != "net fake0\n" {
		t.Errorf("kernel after everything went:\n%s", got)
	}
	for k := range ts.st.Dump() {
		if !strings.HasPrefix(k, "meta/") && k != "networks/bridge" {
			t.Errorf("left in the store: %s", k)
		}
	}
}

// ops is every operation that changes the kernel, each on a service set up
// by setup.
var ops = []struct {
	name string
	run  func(*testService) error
}{
	{"create", func(ts *testService) error {
		_, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "new", Subnets: []SubnetSpec{{Subnet: "10.30.0.0/24"}}})
		return err
	}},
	{"attach", func(ts *testService) error {
		_, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/b", Ports: ports("9090:90", "[::1]:9091:91")})
		return err
	}},
	{"detach", func(ts *testService) error { return ts.DetachNamespace(ctx, "web", "/ns/a") }},
	{"detach-going", func(ts *testService) error {
		return ts.Detach(ctx, DetachSpec{Owner: Container("c1"), NamespaceGoing: true})
	}},
	{"rm", func(ts *testService) error { _, err := ts.RemoveNetworks(ctx, "spare"); return err }},
}

func setup(t *testing.T, replay bool) *testService {
	t.Helper()
	ts := newTestService(replay)
	for _, p := range []string{"/ns/a", "/ns/b", "/ns/c1"} {
		ts.k.addNS(p)
	}
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	_, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}})
	must(err)
	_, err = ts.CreateNetwork(ctx, NetworkSpec{Name: "spare"})
	must(err)
	_, err = ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/a", Ports: ports("8080:80")})
	must(err)
	_, err = ts.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: "/ns/c1", Owner: Container("c1"), Name: "c1", Ports: ports("7070:70")})
	must(err)
	return ts
}

// A failure injected at every driver call of every operation leaves the
// store and the fake kernel exactly as they were.
func TestFailureAtEveryDriverCallChangesNothing(t *testing.T) {
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			dry := setup(t, false)
			start := dry.d.calls
			if err := op.run(dry); err != nil {
				t.Fatalf("without a failure: %v", err)
			}
			n := dry.d.calls - start
			if n == 0 {
				t.Fatal("the operation made no driver call")
			}
			for i := 1; i <= n; i++ {
				ts := setup(t, false)
				before := ts.state()
				ts.d.failAt = ts.d.calls + i
				err := op.run(ts)
				if !errors.Is(err, errInjected) {
					t.Errorf("failure at call %d of %d: err = %v", i, n, err)
				}
				ts.d.failAt = 0
				if got := ts.state(); got != before {
					t.Errorf("failure at call %d of %d (%v) changed the state:\n%s", i, n, err, lineDiff(before, got))
				}
			}
		})
	}
}

// A store that runs each transaction twice (as etcd does on conflict) sees
// the same driver calls: no kernel work happens inside a transaction.
func TestNoKernelWorkInTransactions(t *testing.T) {
	for _, op := range ops {
		t.Run(op.name, func(t *testing.T) {
			once, twice := setup(t, false), setup(t, true)
			for _, ts := range []*testService{once, twice} {
				clear(ts.d.byMethod)
				if err := op.run(ts); err != nil {
					t.Fatal(err)
				}
			}
			if !maps.Equal(once.d.byMethod, twice.d.byMethod) {
				t.Errorf("driver calls %v, with every transaction replayed %v", once.d.byMethod, twice.d.byMethod)
			}
		})
	}
}

// Many goroutines attaching, detaching and creating at once end with a store
// and a kernel that agree, and no address given twice.
func TestConcurrentCallsEndConsistent(t *testing.T) {
	ts := newTestService(false)
	const n = 40
	for i := range n {
		ts.k.addNS(fmt.Sprintf("/ns/%d", i))
	}
	if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "web", Subnets: []SubnetSpec{{Subnet: "10.10.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := range n {
		wg.Go(func() {
			p := fmt.Sprintf("/ns/%d", i)
			if _, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: p}); err != nil {
				t.Error(err)
				return
			}
			if _, err := ts.Attach(ctx, AttachSpec{Network: DefaultNetwork, NetNS: p}); err != nil {
				t.Error(err)
			}
			if i%3 == 0 {
				if err := ts.DetachNamespace(ctx, "web", p); err != nil {
					t.Error(err)
				}
			}
			if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "same"}); err == nil {
				mu.Lock()
				created++
				mu.Unlock()
			} else if !errdefs.Is(err, errdefs.Conflict) {
				t.Error(err)
			}
		})
	}
	wg.Go(func() {
		for range 10 {
			if _, err := ts.Reconcile(ctx); err != nil {
				t.Error(err)
			}
		}
	})
	wg.Wait()
	if created != 1 {
		t.Errorf("network \"same\" created %d times", created)
	}
	atts, err := ts.Attachments()
	if err != nil {
		t.Fatal(err)
	}
	seen := map[string]string{}
	eps := 0
	for _, a := range atts {
		k := a.NetworkID + " " + a.IPv4.Addr().String()
		if o, dup := seen[k]; dup {
			t.Errorf("address %s given to %s and %s", a.IPv4, o, a.NetNS)
		}
		seen[k] = a.NetNS
		if !strings.Contains(ts.d.kernel(), "ep "+a.HostIf+" "+a.NetNS+" "+a.IfName+"\n") {
			t.Errorf("attachment %s %s not in the kernel", a.NetNS, a.IfName)
		}
		eps++
	}
	if want := 2*n - (n+2)/3; eps != want {
		t.Errorf("%d attachments, want %d", eps, want)
	}
	if got := strings.Count(ts.d.kernel(), "ep "); got != eps {
		t.Errorf("%d endpoints in the kernel, %d in the store", got, eps)
	}
	leases := 0
	for k := range ts.st.Dump() {
		if strings.HasPrefix(k, "leases/") {
			leases++
		}
	}
	if leases != eps {
		t.Errorf("%d leases for %d attachments", leases, eps)
	}
	if out, err := ts.Reconcile(ctx); err != nil || len(out) > 0 {
		t.Errorf("reconcile after the storm: %v %q", err, out)
	}
}

// Reconcile settles what a crash left: a half-made attachment is undone, a
// half-removed one finished, a half-made network removed, an attachment
// whose namespace is gone released, an orphan in the kernel deleted.
func TestReconcileSettlesCrashes(t *testing.T) {
	ts := setup(t, false)
	ts.k.addNS("/ns/crash")
	// A crash right after the driver's Join: the attachment stays marked.
	a, err := ts.Attach(ctx, AttachSpec{Network: "web", NetNS: "/ns/crash"})
	if err != nil {
		t.Fatal(err)
	}
	before := ts.state()
	a.Pending = pendingAttach
	if err := ts.st.Update(func(tx store.Tx) error { return store.PutJSON(tx, store.Endpoints, a.key(), a) }); err != nil {
		t.Fatal(err)
	}
	ts.d.eps["fkorphan"] = "/ns/b eth9"
	ts.k.dropNS("/ns/a") // its attachment is released
	out, err := ts.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(out, "\n")
	for _, want := range []string{"its attach never finished", "its namespace is gone", "deleted fkorphan"} {
		if !strings.Contains(got, want) {
			t.Errorf("reconcile said:\n%s\nwant %q", got, want)
		}
	}
	after := ts.state()
	if strings.Contains(after, a.ID) || strings.Contains(after, "/ns/a") || strings.Contains(after, "fkorphan") || after == before {
		t.Errorf("state after reconcile:\n%s", after)
	}
	if out, err := ts.Reconcile(ctx); err != nil || len(out) > 0 {
		t.Errorf("second reconcile: %v %q", err, out)
	}
}

func lineDiff(a, b string) string {
	al, bl := strings.Split(a, "\n"), strings.Split(b, "\n")
	var out []string
	for _, l := range al {
		if !slices.Contains(bl, l) {
			out = append(out, "- "+l)
		}
	}
	for _, l := range bl {
		if !slices.Contains(al, l) {
			out = append(out, "+ "+l)
		}
	}
	return strings.Join(out, "\n")
}

// A record that does not decode does not stop reconcile: it is skipped and
// reported, and the rest is repaired.
func TestReconcileSkipsCorruptRecords(t *testing.T) {
	ts := setup(t, false)
	if err := ts.st.Update(func(tx store.Tx) error {
		return tx.Put(store.Endpoints, "ns:junk/0123456789", []byte("{not json"))
	}); err != nil {
		t.Fatal(err)
	}
	ts.k.dropNS("/ns/a")
	out, err := ts.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Join(out, "\n")
	if !strings.Contains(got, "skipped state endpoints/ns:junk/0123456789 is corrupt") || !strings.Contains(got, "its namespace is gone") {
		t.Errorf("reconcile said:\n%s", got)
	}
}

// A host process that binds a published port after the fact (one no
// monitor holds) is reported by reconcile.
func TestReconcileReportsListenersOnPublishedPorts(t *testing.T) {
	ts := setup(t, false) // /ns/a publishes 8080 on "web"
	if out, err := ts.Reconcile(ctx); err != nil || len(out) > 0 {
		t.Fatalf("reconcile before: %v %q", err, out)
	}
	ts.k.mu.Lock()
	ts.k.listen["tcp/8080"] = true
	ts.k.mu.Unlock()
	out, err := ts.Reconcile(ctx)
	if err != nil || len(out) != 1 || !strings.Contains(out[0], "listens on tcp port 8080, which namespace /ns/a publishes") {
		t.Errorf("reconcile with a listener on a published port: %v %q", err, out)
	}
}

func TestHoldPorts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: binds in a namespace of its own")
	}
	err := namespace.OnThrowawayThread(func() error {
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			return err
		}
		lo, _ := netlink.LinkByName("lo")
		netlink.LinkSetUp(lo)
		release, err := HoldPorts(ports("8080:80", "8080:80/udp", "127.0.0.1:8081:80", "[::1]:8082:80", "[::]:8083:80", "8084:80/sctp"))
		if err != nil {
			return err
		}
		for _, a := range []string{"0.0.0.0:8080", "127.0.0.1:8081", "[::1]:8082", "[::]:8083"} {
			if l, err := net.Listen("tcp", a); err == nil {
				l.Close()
				t.Errorf("listen on held %s succeeded", a)
			}
		}
		if c, err := net.ListenPacket("udp4", "0.0.0.0:8080"); err == nil {
			c.Close()
			t.Error("bind of held udp 8080 succeeded")
		}
		release()
		l, err := net.Listen("tcp", "127.0.0.1:8081")
		if err != nil {
			return fmt.Errorf("after release: %w", err)
		}
		l.Close()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
