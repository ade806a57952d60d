package network

import (
	"testing"
)

// The default route stays on the network that sorts first (or has the
// highest --gw-priority), whatever the order of connections, and moves to
// the next one when its network is disconnected — as Docker.
func TestDefaultRouteFollowsDocker(t *testing.T) {
	ts := newTestService(false)
	ts.k.addNS("/ns/x")
	for _, n := range []struct{ name, subnet string }{{"beta", "10.20.0.0/24"}, {"alpha", "10.21.0.0/24"}, {"gamma", "10.22.0.0/24"}, {"zeta", "10.23.0.0/24"}} {
		if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: n.name, Subnets: []SubnetSpec{{Subnet: n.subnet}}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ts.CreateNetwork(ctx, NetworkSpec{Name: "aaa-internal", Internal: true, Subnets: []SubnetSpec{{Subnet: "10.24.0.0/24"}}}); err != nil {
		t.Fatal(err)
	}
	owner := Container("x")
	route := func() string {
		ts.k.mu.Lock()
		defer ts.k.mu.Unlock()
		return ts.k.ns["/ns/x"].routes["4"]
	}
	attach := func(net string, prio int) {
		t.Helper()
		if _, err := ts.Attach(ctx, AttachSpec{Network: net, NetNS: "/ns/x", Owner: owner, Name: "x", GwPriority: prio}); err != nil {
			t.Fatal(err)
		}
	}
	detach := func(net string) {
		t.Helper()
		if err := ts.Detach(ctx, DetachSpec{Owner: owner, Network: net}); err != nil {
			t.Fatal(err)
		}
	}
	want := func(r string) {
		t.Helper()
		if got := route(); got != r {
			t.Fatalf("default route %q, want %q", got, r)
		}
	}
	attach("beta", 0)
	want("eth0 10.20.0.1")
	attach("gamma", 0) // sorts after beta: the route stays
	want("eth0 10.20.0.1")
	attach("alpha", 0) // sorts first: takes it
	want("eth2 10.21.0.1")
	attach("aaa-internal", 0) // no gateway: changes nothing
	want("eth2 10.21.0.1")
	attach("zeta", 5) // highest priority wins over the name
	want("eth4 10.23.0.1")
	detach("gamma") // not the holder
	want("eth4 10.23.0.1")
	detach("zeta") // the holder: the next one takes over
	want("eth2 10.21.0.1")
	detach("alpha")
	want("eth0 10.20.0.1")
	detach("beta") // only the internal network is left
	want("")

	// A namespace of another owner kind (CNI) keeps what its driver set.
	ts.k.addNS("/ns/y")
	for _, net := range []string{"beta", "alpha"} {
		if _, err := ts.Attach(ctx, AttachSpec{Network: net, NetNS: "/ns/y", Owner: Owner{Kind: OwnerCNI, ID: "c/" + net}}); err != nil {
			t.Fatal(err)
		}
	}
	ts.k.mu.Lock()
	defer ts.k.mu.Unlock()
	if got := ts.k.ns["/ns/y"].routes["4"]; got != "eth1 10.21.0.1" {
		t.Fatalf("CNI namespace: default route %q, want the last ADD's", got)
	}
}
