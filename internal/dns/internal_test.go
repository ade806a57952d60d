package dns

import (
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

// TestInternal is CVE-2024-29018: forwarding through the host would make
// the resolver a two-way channel out of a network meant to have none. A
// namespace on internal networks only gets local names; other names are
// SERVFAIL (as from Docker) and never reach the host's upstream, nor its
// own --dns server when that is off its networks; an on-net --dns server is
// asked from inside the namespace. Opting in, or a second network that is
// not internal, forwards as usual.
func TestInternal(t *testing.T) {
	e := newEnv(t, webRecords)
	nets := []Network{{Name: "back", Internal: true}, {Name: "web"}}
	e.srv.SetNetworks(nets)
	only, withDNS, onNet, both := e.container(t), e.container(t), e.container(t), e.container(t)
	e.listen(t, Namespace{Path: only.NetPath(), Networks: []string{"back"}})
	e.listen(t, Namespace{Path: withDNS.NetPath(), Networks: []string{"back"}, Upstreams: []string{upstream2}})
	e.listen(t, Namespace{Path: both.NetPath(), Networks: []string{"back", "web"}})

	// A resolver on the internal network itself, which only the container
	// can reach: 10.90.0.53 on a link inside its namespace.
	onNet.MustRun("ip", "link", "add", "back0", "type", "veth", "peer", "name", "back1")
	onNet.MustRun("ip", "addr", "add", "10.90.0.53/24", "dev", "back0")
	onNet.MustRun("ip", "link", "set", "back0", "up")
	onNet.MustRun("ip", "link", "set", "back1", "up")
	local := startUpstream(t, onNet.NetPath(), "10.90.0.53", "198.51.100.9")
	e.listen(t, Namespace{Path: onNet.NetPath(), Networks: []string{"back"}, Upstreams: []string{"10.90.0.53"}})

	external := []struct {
		name  string
		qtype uint16
	}{
		{"example.test", mdns.TypeA},
		{"example.test", mdns.TypeAAAA},
		{"big.test", mdns.TypeTXT},
		{"secret", mdns.TypeMX},                       // a local name, a type answered upstream
		{"7.100.51.198.in-addr.arpa", mdns.TypePTR},   // an address not on the network
		{"exfil-6f6e65.example.test", mdns.TypeA},     // what the CVE's attacker sends
		{"exfil-74776f.example.test", mdns.TypeCNAME}, // whatever the type
	}
	for _, ns := range []string{only.NetPath(), withDNS.NetPath()} {
		if got := addrsOf(ask(t, ns, "secret", mdns.TypeA, qopt{})); !slices.Equal(got, addrs("10.90.0.2")) {
			t.Errorf("local name from an internal namespace: %v", got)
		}
		if m := ask(t, ns, "2.0.90.10.in-addr.arpa", mdns.TypePTR, qopt{}); len(m.Answer) != 1 {
			t.Errorf("local PTR from an internal namespace: %v", m.Answer)
		}
		for _, q := range external {
			for _, o := range []qopt{{}, {tcp: true}} {
				if m := ask(t, ns, q.name, q.qtype, o); m.Rcode != mdns.RcodeServerFailure || len(m.Answer) != 0 {
					t.Errorf("%s %s from an internal namespace (tcp %v): %s %v, want SERVFAIL", q.name, mdns.TypeToString[q.qtype], o.tcp, mdns.RcodeToString[m.Rcode], m.Answer)
				}
			}
		}
	}
	out := only.MustRun("dig", "@127.0.0.11", "+tries=1", "+time=5", "example.test")
	if !strings.Contains(out, "status: SERVFAIL") {
		t.Errorf("dig example.test from an internal namespace: want SERVFAIL\n%s", out)
	}
	for addr, u := range e.up {
		if n := u.total.Load(); n != 0 {
			t.Errorf("upstream %s was asked %d queries from internal namespaces", addr, n)
		}
	}

	// The on-net resolver, asked from the container's own namespace.
	if got := addrsOf(ask(t, onNet.NetPath(), "example.test", mdns.TypeA, qopt{})); !slices.Equal(got, addrs("198.51.100.9")) {
		t.Errorf("example.test through the internal network's own resolver: %v", got)
	}
	if local.count("example.test") != 1 {
		t.Errorf("the on-net resolver saw example.test %d times, want 1", local.count("example.test"))
	}

	// On an internal and a normal network: forwarded through the host.
	if got := addrsOf(ask(t, both.NetPath(), "example.test", mdns.TypeA, qopt{})); !slices.Equal(got, addrs("198.51.100.7")) {
		t.Errorf("example.test from a namespace also on a normal network: %v", got)
	}

	// Opted in (ctnet.internal.dns_forward=true): forwarded through the
	// host, to its own --dns when it has one.
	e.srv.SetNetworks([]Network{{Name: "back", Internal: true, DNSForward: true}})
	for ns, want := range map[string]netip.Addr{only.NetPath(): addrs("198.51.100.7")[0], withDNS.NetPath(): addrs("198.51.100.8")[0]} {
		if got := addrsOf(ask(t, ns, "example.test", mdns.TypeA, qopt{})); !slices.Equal(got, []netip.Addr{want}) {
			t.Errorf("example.test from an opted-in internal namespace: %v, want %v", got, want)
		}
	}
}

// TestInternalSnapshot: the policy arrives through the snapshot file the
// engine writes, and the resolver process applies it.
func TestInternalSnapshot(t *testing.T) {
	e := newEnv(t, webRecords)
	e.srv.Close()
	c := e.container(t)
	r := newResolverProcs(t, e)
	snap := Snapshot{
		Upstreams:  []string{upstream1},
		Records:    webRecords,
		Networks:   []Network{{Name: "back", Internal: true}},
		Namespaces: []Namespace{{Path: c.NetPath(), Networks: []string{"back"}}},
	}
	r.publish(snap)
	if got := addrsOf(ask(t, c.NetPath(), "secret", mdns.TypeA, qopt{})); len(got) != 1 {
		t.Errorf("secret: %v", got)
	}
	if m := ask(t, c.NetPath(), "example.test", mdns.TypeA, qopt{}); m.Rcode != mdns.RcodeServerFailure {
		t.Errorf("example.test from an internal namespace: %s, want SERVFAIL", mdns.RcodeToString[m.Rcode])
	}
	if n := e.up[upstream1].total.Load(); n != 0 {
		t.Errorf("upstream asked %d queries", n)
	}
	snap.Networks[0].DNSForward = true
	r.publish(snap)
	if got := addrsOf(ask(t, c.NetPath(), "example.test", mdns.TypeA, qopt{})); !slices.Equal(got, addrs("198.51.100.7")) {
		t.Errorf("example.test once opted in: %v", got)
	}
}
