package dns

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"

	mdns "github.com/miekg/dns"
)

var webRecords = []Record{
	{Network: "web", Name: "db", Aliases: []string{"database", "db-host"}, Addrs: addrs("10.89.0.2", "fd00:89::2")},
	{Network: "web", Name: "app", Addrs: addrs("10.89.0.3")},
	{Network: "web", Name: "w1", Aliases: []string{"pool"}, Addrs: addrs("10.89.0.10")},
	{Network: "web", Name: "w2", Aliases: []string{"pool"}, Addrs: addrs("10.89.0.11")},
	{Network: "back", Name: "secret", Addrs: addrs("10.90.0.2")},
}

func TestResolve(t *testing.T) {
	e := newEnv(t, webRecords)
	c := e.container(t)
	e.listen(t, Namespace{Path: c.NetPath(), Networks: []string{"web"}})
	ptr6, _ := mdns.ReverseAddr("fd00:89::2")
	for _, tc := range []struct {
		name    string
		qtype   uint16
		rcode   int
		want    []netip.Addr
		ptr     string
		forward bool // the upstream must have seen the name
	}{
		{name: "db", qtype: mdns.TypeA, want: addrs("10.89.0.2")},
		{name: "database", qtype: mdns.TypeA, want: addrs("10.89.0.2")},
		{name: "DB-Host", qtype: mdns.TypeA, want: addrs("10.89.0.2")},
		{name: "db.web", qtype: mdns.TypeA, want: addrs("10.89.0.2")},
		{name: "db", qtype: mdns.TypeAAAA, want: addrs("fd00:89::2")},
		{name: "app", qtype: mdns.TypeAAAA}, // known name, no IPv6: NODATA
		{name: "2.0.89.10.in-addr.arpa", qtype: mdns.TypePTR, ptr: "db.web."},
		{name: ptr6, qtype: mdns.TypePTR, ptr: "db.web."},
		{name: "secret", qtype: mdns.TypeA, rcode: mdns.RcodeNameError, forward: true},
		{name: "2.0.90.10.in-addr.arpa", qtype: mdns.TypePTR, rcode: mdns.RcodeNameError, forward: true},
		{name: "db", qtype: mdns.TypeMX, rcode: mdns.RcodeNameError, forward: true},
		{name: "example.test", qtype: mdns.TypeA, want: addrs("198.51.100.7"), forward: true},
	} {
		t.Run(fmt.Sprintf("%s/%s", tc.name, mdns.TypeToString[tc.qtype]), func(t *testing.T) {
			m := ask(t, c.NetPath(), tc.name, tc.qtype, qopt{})
			if m.Rcode != tc.rcode {
				t.Fatalf("rcode %s, want %s\n%v", mdns.RcodeToString[m.Rcode], mdns.RcodeToString[tc.rcode], m)
			}
			if got := addrsOf(m); !slices.Equal(got, tc.want) {
				t.Errorf("addresses %v, want %v", got, tc.want)
			}
			if tc.ptr != "" {
				if len(m.Answer) != 1 || m.Answer[0].(*mdns.PTR).Ptr != tc.ptr {
					t.Errorf("PTR answer %v, want %s", m.Answer, tc.ptr)
				}
			}
			if got := e.up[upstream1].count(tc.name) > 0; got != tc.forward {
				t.Errorf("forwarded upstream: %v, want %v", got, tc.forward)
			}
		})
	}
}

func TestRoundRobin(t *testing.T) {
	e := newEnv(t, webRecords)
	c := e.container(t)
	e.listen(t, Namespace{Path: c.NetPath(), Networks: []string{"web"}})
	firsts := map[netip.Addr]int{}
	for range 4 {
		got := addrsOf(ask(t, c.NetPath(), "pool", mdns.TypeA, qopt{}))
		sorted := slices.Clone(got)
		slices.SortFunc(sorted, netip.Addr.Compare)
		if !slices.Equal(sorted, addrs("10.89.0.10", "10.89.0.11")) {
			t.Fatalf("pool answered %v, want both containers", got)
		}
		firsts[got[0]]++
	}
	if firsts[netip.MustParseAddr("10.89.0.10")] != 2 || firsts[netip.MustParseAddr("10.89.0.11")] != 2 {
		t.Errorf("first answers over 4 queries %v, want each container twice", firsts)
	}
}

// TestDig asks with the real resolver tool from inside the container, which
// has nothing but lo: forwarding happens from the host side.
func TestDig(t *testing.T) {
	e := newEnv(t, webRecords)
	c := e.container(t)
	e.listen(t, Namespace{Path: c.NetPath(), Networks: []string{"web"}})
	if out := c.MustRun("ip", "route", "show"); strings.TrimSpace(out) != "" {
		t.Fatalf("container has routes: %s", out)
	}
	if out, err := c.Run("dig", "+tries=1", "+time=1", "+short", "@"+upstream1, "example.test"); err == nil && strings.Contains(out, "198.51") {
		t.Fatalf("container reached the upstream directly: %s", out)
	}
	for _, tc := range []struct{ args, want string }{
		{"db", "10.89.0.2"},
		{"database AAAA", "fd00:89::2"},
		{"-x 10.89.0.3", "app.web."},
		{"example.test", "198.51.100.7"},
		{"secret", ""},
	} {
		args := append([]string{"@127.0.0.11", "+short", "+tries=1", "+time=5"}, strings.Fields(tc.args)...)
		out := c.MustRun("dig", args...)
		if strings.TrimSpace(out) != tc.want {
			t.Errorf("dig %s: %q, want %q", tc.args, out, tc.want)
		}
	}
	out := c.MustRun("dig", "@127.0.0.11", "+tries=1", "+time=5", "secret")
	if !strings.Contains(out, "status: NXDOMAIN") {
		t.Errorf("dig secret: want NXDOMAIN\n%s", out)
	}
}

// TestTruncation: an answer too big for UDP comes back with TC set and whole
// over TCP, both for local names and forwarded ones.
func TestTruncation(t *testing.T) {
	var recs []Record
	var want []string
	for i := range 60 {
		a := fmt.Sprintf("10.89.1.%d", i+1)
		recs = append(recs, Record{Network: "web", Name: fmt.Sprintf("m%d", i), Aliases: []string{"many"}, Addrs: addrs(a)})
		want = append(want, a)
	}
	e := newEnv(t, recs)
	c := e.container(t)
	e.listen(t, Namespace{Path: c.NetPath(), Networks: []string{"web"}})
	for _, tc := range []struct {
		name   string
		qtype  uint16
		answer int
	}{{"many", mdns.TypeA, 60}, {"big.test", mdns.TypeTXT, 40}} {
		udp := ask(t, c.NetPath(), tc.name, tc.qtype, qopt{})
		if !udp.Truncated || len(udp.Answer) >= tc.answer {
			t.Errorf("%s over UDP: truncated %v with %d answers, want TC and fewer than %d", tc.name, udp.Truncated, len(udp.Answer), tc.answer)
		}
		udp.Compress = true
		if b, _ := udp.Pack(); len(b) > mdns.MinMsgSize {
			t.Errorf("%s over UDP: %d bytes, over 512", tc.name, len(b))
		}
		tcp := ask(t, c.NetPath(), tc.name, tc.qtype, qopt{tcp: true})
		if tcp.Truncated || len(tcp.Answer) != tc.answer {
			t.Errorf("%s over TCP: truncated %v with %d answers, want %d", tc.name, tcp.Truncated, len(tcp.Answer), tc.answer)
		}
		big := ask(t, c.NetPath(), tc.name, tc.qtype, qopt{edns: 4096})
		if big.Truncated || len(big.Answer) != tc.answer {
			t.Errorf("%s over UDP with EDNS0 4096: truncated %v with %d answers, want %d", tc.name, big.Truncated, len(big.Answer), tc.answer)
		}
	}
	// dig retries over TCP by itself when it sees TC.
	out := c.MustRun("dig", "@127.0.0.11", "+noedns", "+short", "+tries=1", "+time=5", "many")
	got := strings.Fields(out)
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("dig +noedns many: %d addresses, want 60\n%s", len(got), out)
	}
}

// TestNamespaces: one server, two containers on different networks, one with
// its own --dns upstream; names stay per network and local names still
// resolve with a custom upstream.
func TestNamespaces(t *testing.T) {
	e := newEnv(t, webRecords)
	c1, c2 := e.container(t), e.container(t)
	e.listen(t, Namespace{Path: c1.NetPath(), Networks: []string{"web"}})
	e.listen(t, Namespace{Path: c2.NetPath(), Networks: []string{"back"}, Upstreams: []string{upstream2 + ":53"}})
	if got := e.srv.Namespaces(); !slices.Equal(got, sortedStrings(c1.NetPath(), c2.NetPath())) {
		t.Fatalf("namespaces %v", got)
	}
	for _, tc := range []struct {
		ns   string
		name string
		want []netip.Addr
	}{
		{c1.NetPath(), "example.test", addrs("198.51.100.7")},
		{c2.NetPath(), "example.test", addrs("198.51.100.8")},
		{c1.NetPath(), "db", addrs("10.89.0.2")},
		{c2.NetPath(), "secret", addrs("10.90.0.2")},
		{c2.NetPath(), "db", nil},
		{c1.NetPath(), "secret", nil},
	} {
		if got := addrsOf(ask(t, tc.ns, tc.name, mdns.TypeA, qopt{})); !slices.Equal(got, tc.want) {
			t.Errorf("%s from %s: %v, want %v", tc.name, tc.ns, got, tc.want)
		}
	}
	if e.up[upstream2].count("db") != 1 || e.up[upstream1].count("db") != 0 {
		t.Errorf("db from the back network should go to its own upstream only")
	}

	// Connecting c2 to web later (network connect) is a Listen with more networks.
	e.listen(t, Namespace{Path: c2.NetPath(), Networks: []string{"back", "web"}, Upstreams: []string{upstream2}})
	if got := addrsOf(ask(t, c2.NetPath(), "db", mdns.TypeA, qopt{})); !slices.Equal(got, addrs("10.89.0.2")) {
		t.Errorf("db after connect: %v", got)
	}
}

func sortedStrings(ss ...string) []string {
	slices.Sort(ss)
	return ss
}

// TestForget: a namespace whose holder dies is still held by our sockets
// until Prune or Forget releases it; Forget is idempotent.
func TestForget(t *testing.T) {
	e := newEnv(t, webRecords)
	c1, c2 := e.container(t), e.container(t)
	e.listen(t, Namespace{Path: c1.NetPath(), Networks: []string{"web"}})
	e.listen(t, Namespace{Path: c2.NetPath(), Networks: []string{"web"}})
	path := c1.NetPath()
	c1.Kill()
	if got := e.srv.Prune(); !slices.Equal(got, []string{path}) {
		t.Errorf("Prune forgot %v, want [%s]", got, path)
	}
	for range 2 {
		if err := e.srv.Forget(path); err != nil {
			t.Errorf("Forget %s: %v", path, err)
		}
	}
	if got := e.srv.Namespaces(); !slices.Equal(got, []string{c2.NetPath()}) {
		t.Errorf("namespaces %v, want only %s", got, c2.NetPath())
	}
	if err := e.srv.Listen(Namespace{Path: path}); err == nil {
		t.Errorf("Listen in a vanished namespace succeeded")
	}
	// The other namespace is untouched; after Forget its port is closed.
	ask(t, c2.NetPath(), "db", mdns.TypeA, qopt{})
	e.srv.Forget(c2.NetPath())
	if _, err := tryAsk(c2.NetPath(), "db", mdns.TypeA, qopt{tcp: true}); err == nil {
		t.Errorf("query after Forget was answered")
	}
	// And it can serve there again.
	e.listen(t, Namespace{Path: c2.NetPath(), Networks: []string{"web"}})
	ask(t, c2.NetPath(), "db", mdns.TypeA, qopt{})
}

func TestListenErrors(t *testing.T) {
	e := newEnv(t, nil)
	for _, tc := range []struct{ name, path, want string }{
		{"empty", "", "path is empty"},
		{"missing", "/proc/self/ns/nope", "no such file"},
		{"not a namespace", "/etc/hostname", "netns"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := e.srv.Listen(Namespace{Path: tc.path})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Listen %q: %v, want error containing %q", tc.path, err, tc.want)
			}
		})
	}
	if got := e.srv.Namespaces(); len(got) != 0 {
		t.Errorf("namespaces after failures: %v", got)
	}
}
