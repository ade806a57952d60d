package network

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"testing"

	"github.com/ctnet/ctnet/internal/driver"
	"github.com/ctnet/ctnet/internal/errdefs"
)

// JoinHost makes the fake driver's endpoint with its inner end "on the host".
func (d *fakeDriver) JoinHost(ctx context.Context, n driver.Network, ep driver.Endpoint, peer string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if err := d.call("JoinHost"); err != nil {
		return err
	}
	if !d.nets[n.Device] {
		return driver.Stale(fmt.Errorf("device %s is missing", n.Device))
	}
	if _, ok := d.eps[ep.HostIf]; ok {
		return fmt.Errorf("%s exists", ep.HostIf)
	}
	d.eps[ep.HostIf] = "host " + peer
	return nil
}

var _ driver.HostJoiner = (*fakeDriver)(nil)

func dockerNet(t *testing.T, replay bool) *testService {
	t.Helper()
	ts := newTestService(replay)
	ts.k.addNS("/ns/a")
	if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "dk", ID: strings.Repeat("ab", 32), Subnets: []SubnetSpec{{Subnet: "10.20.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	return ts
}

func epID(i int) string { return fmt.Sprintf("e%06x", i+1) + strings.Repeat("e", 57) }

func TestEndpointSteps(t *testing.T) {
	for _, replay := range []bool{false, true} {
		t.Run(fmt.Sprintf("replay=%v", replay), func(t *testing.T) {
			ts := dockerNet(t, replay)
			base := ts.state()
			owner := Docker(epID(1))
			spec := EndpointSpec{Network: "dk", Owner: owner, ID: epID(1), Addrs: []netip.Addr{netip.MustParseAddr("10.20.0.7")}}
			a, err := ts.CreateEndpoint(ctx, spec)
			if err != nil {
				t.Fatal(err)
			}
			if a.IPv4.String() != "10.20.0.7/24" || a.MAC.String() != "02:42:0a:14:00:07" || a.HostIf != "fk"+epID(1)[:7] {
				t.Fatalf("endpoint %+v", a)
			}
			if again, err := ts.CreateEndpoint(ctx, spec); err != nil || again.ID != a.ID {
				t.Fatalf("create again: %v %+v", err, again)
			}
			if atts, _ := ts.Attachments(owner); len(atts) != 0 || ts.d.kernel() != "net fake0\nnet fk-abababab\n" {
				t.Fatalf("a created endpoint shows or is in the kernel: %v\n%s", atts, ts.d.kernel())
			}
			if _, err := ts.PublishEndpoint(ctx, owner, "dk", ports("8080:80")); !errdefs.Is(err, errdefs.Conflict) {
				t.Errorf("publish before join: %v", err)
			}
			res, err := ts.JoinEndpoint(ctx, owner, "dk", "peer1", "/run/docker/netns/x")
			if err != nil {
				t.Fatal(err)
			}
			if len(res.Gateways) != 1 || res.Gateways[0].String() != "10.20.0.1" || res.MTU != 1500 {
				t.Errorf("join: %+v", res)
			}
			if _, err := ts.JoinEndpoint(ctx, owner, "dk", "peer1", "/run/docker/netns/x"); err != nil {
				t.Errorf("join again: %v", err)
			}
			if atts, _ := ts.Attachments(owner); len(atts) != 1 || atts[0].Name != "/run/docker/netns/x" {
				t.Errorf("after join: %+v", atts)
			}
			if _, err := ts.PublishEndpoint(ctx, owner, "dk", ports("8080:80", "90")); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(ts.d.kernel(), ":8080:80/tcp") {
				t.Errorf("not published:\n%s", ts.d.kernel())
			}
			// Another endpoint's port is refused and leaves it unpublished.
			other := Docker(epID(2))
			if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: other, ID: epID(2)}); err != nil {
				t.Fatal(err)
			}
			if _, err := ts.JoinEndpoint(ctx, other, "dk", "peer2", ""); err != nil {
				t.Fatal(err)
			}
			if _, err := ts.PublishEndpoint(ctx, other, "dk", ports("8080:80")); !errdefs.Is(err, errdefs.Conflict) {
				t.Errorf("a taken port: %v", err)
			}
			if b, _ := ts.Endpoint(other, "dk"); len(b.Ports) != 0 || b.IPv4.String() != "10.20.0.2/24" {
				t.Errorf("the other endpoint: %+v", b)
			}
			if err := ts.UnpublishEndpoint(ctx, owner, "dk"); err != nil {
				t.Fatal(err)
			}
			if strings.Contains(ts.d.kernel(), "port") {
				t.Errorf("ports left:\n%s", ts.d.kernel())
			}
			for _, o := range []Owner{owner, other} {
				if err := ts.LeaveEndpoint(ctx, o, "dk"); err != nil {
					t.Fatal(err)
				}
				if err := ts.LeaveEndpoint(ctx, o, "dk"); err != nil {
					t.Errorf("leave again: %v", err)
				}
				if err := ts.DeleteEndpoint(ctx, o, "dk"); err != nil {
					t.Fatal(err)
				}
				if err := ts.DeleteEndpoint(ctx, o, "dk"); err != nil {
					t.Errorf("delete again: %v", err)
				}
			}
			if now := ts.state(); now != base {
				t.Errorf("left behind:\n%s", lineDiff(base, now))
			}
		})
	}
}

func TestEndpointFailuresChangeNothing(t *testing.T) {
	ts := dockerNet(t, false)
	owner := Docker(epID(1))
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: owner, ID: epID(1)}); err != nil {
		t.Fatal(err)
	}
	before := ts.state()
	ts.d.failAt = ts.d.calls + 1
	if _, err := ts.JoinEndpoint(ctx, owner, "dk", "p", ""); err == nil {
		t.Fatal("join with a failing driver succeeded")
	}
	ts.d.failAt = 0
	if now := ts.state(); now != before {
		t.Errorf("a failed join changed:\n%s", lineDiff(before, now))
	}
	if _, err := ts.JoinEndpoint(ctx, owner, "dk", "p", ""); err != nil {
		t.Fatalf("join after the failure: %v", err)
	}
	before = ts.state()
	ts.d.failAt = ts.d.calls + 1
	if _, err := ts.PublishEndpoint(ctx, owner, "dk", ports("8080:80")); err == nil {
		t.Fatal("publish with a failing driver succeeded")
	}
	ts.d.failAt = ts.d.calls + 1
	if err := ts.LeaveEndpoint(ctx, owner, "dk"); err == nil {
		t.Fatal("leave with a failing driver succeeded")
	}
	ts.d.failAt = 0
	if now := ts.state(); now != before {
		t.Errorf("a failed publish or leave changed:\n%s", lineDiff(before, now))
	}
	for _, bad := range []EndpointSpec{
		{Network: "nope", Owner: owner, ID: epID(3)},
		{Network: "dk", Owner: Docker(epID(3)), ID: "short"},
		{Network: "dk", ID: epID(3)},
		{Network: "dk", Owner: Docker(epID(3)), ID: epID(3), MAC: "01:00:00:00:00:01"},
		{Network: "dk", Owner: Docker(epID(3)), ID: epID(3), Addrs: []netip.Addr{netip.MustParseAddr("10.99.0.2")}},
		{Network: "dk", Owner: Docker(epID(3)), ID: epID(3), Addrs: []netip.Addr{netip.MustParseAddr("10.20.0.1")}},
		{Network: "dk", Owner: Docker(epID(3)), ID: epID(3), Addrs: []netip.Addr{netip.MustParseAddr("10.20.0.9"), netip.MustParseAddr("10.20.0.8")}},
		{Network: "dk", Owner: owner, ID: epID(1), Addrs: []netip.Addr{netip.MustParseAddr("10.20.0.9")}}, // already on dk: returns it
	} {
		before := ts.state()
		a, err := ts.CreateEndpoint(ctx, bad)
		if err == nil && bad.Owner != owner {
			t.Errorf("%+v: created %+v", bad, a)
		}
		if now := ts.state(); now != before {
			t.Errorf("%+v changed:\n%s", bad, lineDiff(before, now))
		}
	}
}

func TestEvictStaleEndpoints(t *testing.T) {
	ts := dockerNet(t, false)
	ip := netip.MustParseAddr("10.20.0.5")
	old, newer := Docker(epID(1)), Docker(epID(2))
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: old, ID: epID(1), Addrs: []netip.Addr{ip}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.JoinEndpoint(ctx, old, "dk", "p1", ""); err != nil {
		t.Fatal(err)
	}
	// A namespace attached by ctnet is no Docker endpoint: its address is
	// not the Docker IPAM's to give.
	held, err := ts.Attach(ctx, AttachSpec{Network: "dk", NetNS: "/ns/a"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: newer, ID: epID(2), Addrs: []netip.Addr{held.IPv4.Addr()}}); !errdefs.Is(err, errdefs.Conflict) {
		t.Errorf("an address of ctnet's own attachment: %v", err)
	}
	// Docker's IPAM gives the stale endpoint's address to a new one.
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: newer, ID: epID(2), Addrs: []netip.Addr{ip}}); err != nil {
		t.Fatal(err)
	}
	if a, _ := ts.Endpoint(old, "dk"); a != nil {
		t.Errorf("the stale endpoint stays: %+v", a)
	}
	if strings.Contains(ts.d.kernel(), "fk"+epID(1)[:7]) {
		t.Errorf("the stale endpoint's interface stays:\n%s", ts.d.kernel())
	}
	// An address ctnet's IPAM reserved is not stale: a conflict.
	pool, err := ts.PoolByID("10.20.0.0/24")
	if err != nil {
		t.Fatal(err)
	}
	r, err := ts.RequestAddress(ctx, pool.ID, netip.Addr{}, false)
	if err != nil {
		t.Fatal(err)
	}
	third := Docker(epID(3))
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: third, ID: epID(3), Addrs: []netip.Addr{r.Addr()}}); err != nil {
		t.Fatal(err)
	}
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: Docker(epID(4)), ID: epID(4), Addrs: []netip.Addr{r.Addr()}}); !errdefs.Is(err, errdefs.Conflict) {
		t.Errorf("a reserved address held by another endpoint: %v", err)
	}
}

func TestPools(t *testing.T) {
	ts := newTestService(true)
	ts.k.addNS("/ns/a")
	ts.k.host = append(ts.k.host, netip.MustParsePrefix("172.17.0.0/16"))
	p1, err := ts.RequestPool(ctx, PoolSpec{})
	if err != nil {
		t.Fatal(err)
	}
	p2, err := ts.RequestPool(ctx, PoolSpec{})
	if err != nil {
		t.Fatal(err)
	}
	// The default network took one subnet of Docker's pools, the host the
	// first: the pools are the next ones.
	if p1.Prefix.Overlaps(netip.MustParsePrefix("172.17.0.0/16")) || p1.Prefix == p2.Prefix {
		t.Fatalf("pools %s and %s", p1.Prefix, p2.Prefix)
	}
	for _, bad := range []PoolSpec{
		{Pool: p1.Prefix.String() + "x"},
		{Pool: "10.30.0.1/24"},
		{Pool: "203.0.113.0/25"},
		{Pool: p2.Prefix.Addr().String() + "/8"},
		{V6: true},
		{Pool: "10.30.0.0/24", V6: true},
		{Pool: "10.30.0.0/24", SubPool: "10.31.0.0/25"},
	} {
		before := ts.state()
		if p, err := ts.RequestPool(ctx, bad); err == nil {
			t.Errorf("%+v: pool %+v", bad, p)
		}
		if now := ts.state(); now != before {
			t.Errorf("%+v changed:\n%s", bad, lineDiff(before, now))
		}
	}
	if again, err := ts.RequestPool(ctx, PoolSpec{Pool: p1.ID}); err != nil || again.ID != p1.ID {
		t.Errorf("asking again: %v %+v", err, again)
	}
	p3, err := ts.RequestPool(ctx, PoolSpec{Pool: "10.30.0.0/24", SubPool: "10.30.0.128/25"})
	if err != nil {
		t.Fatal(err)
	}
	gw, err := ts.RequestAddress(ctx, p3.ID, netip.Addr{}, true)
	if err != nil || gw.String() != "10.30.0.1/24" {
		t.Fatalf("gateway %s %v", gw, err)
	}
	seen := map[netip.Addr]bool{}
	for i := 0; i < 5; i++ {
		a, err := ts.RequestAddress(ctx, p3.ID, netip.Addr{}, false)
		if err != nil {
			t.Fatal(err)
		}
		if seen[a.Addr()] || !netip.MustParsePrefix("10.30.0.128/25").Contains(a.Addr()) {
			t.Errorf("address %s (seen %v)", a, seen)
		}
		seen[a.Addr()] = true
	}
	if _, err := ts.RequestAddress(ctx, p3.ID, netip.MustParseAddr("10.30.1.5"), false); err == nil {
		t.Error("an address outside the pool")
	}
	if _, err := ts.RequestAddress(ctx, "nope", netip.Addr{}, false); err == nil {
		t.Error("an unknown pool")
	}
	// A network over the pool: its attachments' addresses are the pool's too.
	if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "pooled", ID: strings.Repeat("cd", 32), Subnets: []SubnetSpec{{Subnet: "10.30.0.0/24", IPRange: "10.30.0.128/25"}}}); err != nil {
		t.Fatal(err)
	}
	att, err := ts.Attach(ctx, AttachSpec{Network: "pooled", NetNS: "/ns/a"})
	if err != nil {
		t.Fatal(err)
	}
	if seen[att.IPv4.Addr()] {
		t.Logf("ctnet's own attach took %s, reserved by the pool (it does not see reservations)", att.IPv4)
	}
	for i := 0; i < 5; i++ {
		a, err := ts.RequestAddress(ctx, p3.ID, netip.Addr{}, false)
		if err != nil {
			t.Fatal(err)
		}
		if a.Addr() == att.IPv4.Addr() {
			t.Errorf("the pool handed out %s, which the network's attachment holds", a)
		}
	}
	for a := range seen {
		if err := ts.ReleaseAddress(ctx, p3.ID, a); err != nil {
			t.Fatal(err)
		}
	}
	for _, p := range []*Pool{p1, p2, p3} {
		if err := ts.ReleasePool(ctx, p.ID); err != nil {
			t.Fatal(err)
		}
	}
	if err := ts.ReleasePool(ctx, "nope"); err != nil {
		t.Errorf("release an unknown pool: %v", err)
	}
	// The network keeps the subnet's pool (a reboot emptied the records).
	if p, err := ts.PoolByID(p3.ID); err != nil || p.Range.String() != "10.30.0.128/25" {
		t.Errorf("pool of a network: %+v %v", p, err)
	}
}

func TestConcurrentEndpoints(t *testing.T) {
	ts := dockerNet(t, false)
	const n = 30
	var wg sync.WaitGroup
	errs := make([]error, n)
	addrs := make([]netip.Prefix, n)
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			o := Docker(epID(i))
			a, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: o, ID: epID(i)})
			if err == nil {
				addrs[i] = a.IPv4
				_, err = ts.JoinEndpoint(ctx, o, "dk", fmt.Sprintf("p%d", i), "")
			}
			if err == nil {
				_, err = ts.PublishEndpoint(ctx, o, "dk", ports(fmt.Sprintf("%d:80", 9000+i)))
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	seen := map[netip.Prefix]int{}
	for i, err := range errs {
		if err != nil {
			t.Errorf("endpoint %d: %v", i, err)
		}
		if j, dup := seen[addrs[i]]; dup {
			t.Errorf("endpoints %d and %d both have %s", i, j, addrs[i])
		}
		seen[addrs[i]] = i
	}
	if atts, _ := ts.Attachments(); len(atts) != n {
		t.Errorf("%d attachments, want %d", len(atts), n)
	}
}

func TestRenameNetwork(t *testing.T) {
	ts := dockerNet(t, false)
	if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "taken"}); err != nil {
		t.Fatal(err)
	}
	o := Docker(epID(1))
	if _, err := ts.CreateEndpoint(ctx, EndpointSpec{Network: "dk", Owner: o, ID: epID(1)}); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"taken", "-x", "", "host", DefaultNetwork} {
		before := ts.state()
		if err := ts.RenameNetwork(ctx, "dk", bad); err == nil {
			t.Errorf("rename to %q succeeded", bad)
		}
		if now := ts.state(); now != before {
			t.Errorf("rename to %q changed:\n%s", bad, lineDiff(before, now))
		}
	}
	if err := ts.RenameNetwork(ctx, strings.Repeat("ab", 32), "web"); err != nil {
		t.Fatal(err)
	}
	if a, _ := ts.Endpoint(o, "web"); a == nil || a.Network != "web" {
		t.Errorf("the endpoint after the rename: %+v", a)
	}
	if _, err := ts.Network(ctx, "dk"); !IsNotFound(err) {
		t.Errorf("the old name: %v", err)
	}
}
