package e2e

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// serve6 runs a container whose TCP and UDP servers on port 80 take both
// families (a service must listen on IPv6 for IPv6 clients of an IPv4-only
// network); TCP answers word and the client's address as the container sees it.
func serve6(t *testing.T, s *sandbox.Sandbox, name, word string, flags ...string) {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name}, flags...)
	args = append(args, "host", "sh", "-c",
		"socat UDP6-RECVFROM:80,ipv6only=0,fork SYSTEM:'echo "+word+"-udp' & "+
			"exec socat TCP6-LISTEN:80,ipv6only=0,fork,reuseaddr SYSTEM:'echo "+word+" $SOCAT_PEERADDR'")
	s.MustCtnet(args...)
	waitFor(t, func() bool {
		out, _, _ := s.Ctnet("exec", name, "socat", "-T1", "-", "TCP:127.0.0.1:80")
		return strings.Contains(out, word)
	}, name+" to listen")
}

// Docker publishes -p 8080:80 on 0.0.0.0 and :: whatever the network; on an
// IPv4-only network ctnet DNATs IPv6 clients to the container's address in
// the network's private /64.
func TestPublishedPortsIPv6OnIPv4Network(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	h6 := sandbox.HostAddr6
	serve6(t, s, "web", "hello", "-p", "8080:80", "-p", "8080:80/udp", "-p", "[::]:9090:80",
		"-p", "["+h6+"]:9091:80", "-p", "["+h6+"]:9091:80/udp", "-p", "127.0.0.1:9092:80")

	port := s.MustCtnet("port", "web")
	for _, want := range []string{"80/tcp -> 0.0.0.0:8080", "80/tcp -> [::]:8080", "80/udp -> 0.0.0.0:8080", "80/udp -> [::]:8080",
		"80/tcp -> [::]:9090", "80/tcp -> [" + h6 + "]:9091", "80/udp -> [" + h6 + "]:9091", "80/tcp -> 127.0.0.1:9092"} {
		if !strings.Contains(port, want+"\n") {
			t.Errorf("ctnet port lacks %q:\n%s", want, port)
		}
	}
	if strings.Contains(port, "0.0.0.0:9090") || strings.Contains(port, "[::]:9092") {
		t.Errorf("ctnet port shows a family not asked for:\n%s", port)
	}
	ps := s.MustCtnet("ps", "--format", "{{.Ports}}")
	for _, want := range []string{"0.0.0.0:8080->80/tcp", "[::]:8080->80/tcp", "[::]:9090->80/tcp", "[" + h6 + "]:9091->80/udp"} {
		if !strings.Contains(ps, want) {
			t.Errorf("ps PORTS lacks %s: %s", want, ps)
		}
	}
	insp := s.MustCtnet("inspect", "--format", "{{json .NetworkSettings.Ports}}", "web")
	for _, want := range []string{`{"HostIp":"0.0.0.0","HostPort":"8080"}`, `{"HostIp":"::","HostPort":"8080"}`, `{"HostIp":"::","HostPort":"9090"}`} {
		if !strings.Contains(insp, want) {
			t.Errorf("inspect Ports lacks %s: %s", want, insp)
		}
	}

	prefix := netip.MustParsePrefix(strings.TrimSpace(s.MustCtnet("network", "inspect", "--format",
		`{{index .Options "ctnet.bridge.published_ipv6_subnet"}}`, "bridge")))
	if !netip.MustParsePrefix("fd00::/8").Contains(prefix.Addr()) || prefix.Bits() != 64 {
		t.Fatalf("published IPv6 subnet %s: want a /64 of fd00::/8", prefix)
	}
	gw6 := prefix.Addr().Next().String()
	b := prefix.Addr().As16()
	b[12], b[13], b[14], b[15] = 172, 17, 0, 2
	ctr6 := netip.AddrFrom16(b).String()

	reach := []struct {
		from       *sandbox.NS
		addr, port string
		peer       string // the client address the container sees
	}{
		{s.Upstream, h6, "8080", gw6}, // another host over IPv6: from the gateway's private address
		{s.Upstream, h6, "9090", gw6},
		{s.Upstream, h6, "9091", gw6},
		{s.Upstream, sandbox.HostAddr, "8080", sandbox.UpstreamAddr}, // IPv4 keeps the client's address
		{s.Host, h6, "8080", gw6},                                    // the host through its own IPv6 address
		{s.Host, "::1", "8080", "172.17.0.1"},
		{s.Host, "::1", "9090", "172.17.0.1"},
		{s.Host, "127.0.0.1", "9092", "172.17.0.1"},
	}
	for _, r := range reach {
		got := tcpGet(r.from, r.addr, r.port)
		if !strings.HasPrefix(got, "hello ") {
			t.Errorf("[%s]:%s from ns %d: got %q, want hello", r.addr, r.port, r.from.PID, got)
			continue
		}
		if peer, _ := netip.ParseAddr(strings.Trim(strings.TrimPrefix(got, "hello "), "[]")); peer.Unmap().String() != r.peer {
			t.Errorf("[%s]:%s from ns %d: the container saw %q, want %s", r.addr, r.port, r.from.PID, got, r.peer)
		}
	}
	for _, p := range []string{"8080", "9091"} {
		if out := udpAsk(s.Upstream, "["+h6+"]:"+p); !strings.Contains(out, "hello-udp") {
			t.Errorf("udp [%s]:%s from upstream: %q", h6, p, out)
		}
	}
	noReach := []struct {
		from       *sandbox.NS
		addr, port string
	}{
		{s.Upstream, sandbox.HostAddr, "9090"}, // [::] is IPv6 only
		{s.Upstream, sandbox.HostAddr, "9091"},
		{s.Upstream, h6, "9092"},
		{s.Upstream, h6, "80"},
	}
	for _, r := range noReach {
		if got := tcpGet(r.from, r.addr, r.port); strings.HasPrefix(got, "hello") {
			t.Errorf("%s:%s is reachable from ns %d", r.addr, r.port, r.from.PID)
		}
	}
	// The private addresses are DNAT targets only: a neighbour that routes
	// the /64 via the host reaches no port directly, and the container sends
	// no IPv6 out even with a route of its own.
	s.Upstream.MustRun("ip", "-6", "route", "add", prefix.String(), "via", h6)
	if got := tcpGet(s.Upstream, ctr6, "80"); strings.HasPrefix(got, "hello") {
		t.Errorf("[%s]:80 is reachable from outside", ctr6)
	}
	if got := tcpGet(s.Upstream, ctr6, "8080"); strings.HasPrefix(got, "hello") {
		t.Errorf("[%s]:8080 is reachable from outside", ctr6)
	}
	hostListener6(t, s.Upstream, "7070")
	pid := strings.TrimSpace(s.MustCtnet("inspect", "--format", "{{.State.Pid}}", "web"))
	s.Host.MustRun("nsenter", "-t", pid, "-n", "ip", "-6", "route", "add", "default", "via", gw6)
	if out, _ := s.Host.Run("nsenter", "-t", pid, "-n", "socat", "-T2", "-", "TCP:["+sandbox.Upstream6+"]:7070,connect-timeout=2"); strings.Contains(out, "upstream") {
		t.Errorf("the container reached [%s]:7070 over IPv6: %q", sandbox.Upstream6, out)
	}

	// Reconcile repairs what the IPv6 path needs: the gateway's address, a
	// map element, the container's address is the container's own.
	s.Host.MustRun("ip", "-6", "addr", "del", gw6+"/64", "dev", "ctnet0")
	s.Host.MustRun("nft", "delete", "element", "inet", "ctnet", "ports6_any", "{ tcp . 8080 }")
	if got := tcpGet(s.Upstream, h6, "8080"); strings.HasPrefix(got, "hello") {
		t.Fatal("[::]:8080 works without its element")
	}
	out := s.MustCtnet("system", "reconcile")
	if !strings.Contains(out, "gateway address "+gw6+"/64 was missing") || !strings.Contains(out, "added 1 port element") {
		t.Errorf("reconcile said: %s", out)
	}
	if got := tcpGet(s.Upstream, h6, "8080"); !strings.HasPrefix(got, "hello ") {
		t.Errorf("[%s]:8080 after reconcile: %q", h6, got)
	}
	base := s.Host.MustRun("nft", "list", "table", "inet", "ctnet")
	s.MustCtnet("rm", "-f", "web")
	after := s.Host.MustRun("nft", "list", "table", "inet", "ctnet")
	if strings.Contains(after, ctr6) || after == base {
		t.Errorf("rm left the IPv6 elements:\n%s", after)
	}
}

// hostListener6 answers "upstream" on [::]:port in ns until the test ends.
func hostListener6(t *testing.T, ns *sandbox.NS, port string) {
	t.Helper()
	l := ns.Command("socat", "TCP6-LISTEN:"+port+",fork,reuseaddr", "SYSTEM:echo upstream")
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Process.Kill(); l.Wait() })
	waitFor(t, func() bool { return strings.Contains(ns.MustRun("ss", "-ltn"), ":"+port) }, "the listener on "+port)
}
