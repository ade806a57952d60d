package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// TestTraceMatchesPackets asks ctnet trace where a packet ends, then sends
// the real packet and checks it ended there.
func TestTraceMatchesPackets(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "--subnet", "10.50.0.0/24", "a")
	s.MustCtnet("network", "create", "--subnet", "10.51.0.0/24", "b")
	s.MustCtnet("network", "create", "--subnet", "10.52.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false", "noicc")
	s.MustCtnet("network", "create", "--subnet", "10.53.0.0/24", "--internal", "inner")
	serve(t, s, "web", "web", "-p", "8080:80", "-p", "127.0.0.1:8081:80")
	serve(t, s, "db", "db")
	serve(t, s, "a1", "a1", "--network", "a")
	serve(t, s, "b1", "b1", "--network", "b")
	serve(t, s, "n1", "n1", "--network", "noicc")
	serve(t, s, "n2", "n2", "--network", "noicc")
	serve(t, s, "i1", "i1", "--network", "inner")
	serve(t, s, "i2", "i2", "--network", "inner")
	// Someone upstream routes the default network's subnet via the host.
	s.Upstream.MustRun("ip", "route", "add", "172.17.0.0/16", "via", sandbox.HostAddr)
	// Something on the host answers on 8081 of its own address (127.0.0.1:8081
	// is published, and so held): a packet that reaches the host itself says
	// so.
	l := s.Host.Command("socat", "TCP-LISTEN:8081,bind="+sandbox.HostAddr+",fork,reuseaddr", "SYSTEM:echo the-host")
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Process.Kill(); l.Wait() })
	waitFor(t, func() bool { return strings.Contains(s.Host.MustRun("ss", "-ltn"), ":8081") }, "the host listener")

	type result struct {
		Delivered bool
		Reaches   string
		Verdict   string
		Steps     []struct{ Where, What string }
	}
	trace := func(args ...string) result {
		t.Helper()
		out := s.MustCtnet(append([]string{"trace", "--format", "json"}, args...)...)
		var r result
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("trace %v: %v\n%s", args, err, out)
		}
		return r
	}
	// what a TCP connection to port 80-ish reaches: the word of whoever answers
	tcpFrom := func(from string, addr, port string) string {
		ns := map[string]*sandbox.NS{"outside": s.Upstream, "host": s.Host}[from]
		if ns != nil {
			out, _ := ns.Command("socat", "-T2", "-", "TCP:"+addr+":"+port+",connect-timeout=2").Output()
			return strings.TrimSpace(string(out))
		}
		out, _, _ := s.Ctnet("exec", from, "socat", "-T2", "-", "TCP:"+addr+":"+port+",connect-timeout=2")
		return strings.TrimSpace(out)
	}
	pingFrom := func(from, addr string) bool {
		for range 2 { // the first may be lost to ARP
			var err error
			switch from {
			case "outside":
				err = s.Upstream.Ping(addr)
			case "host":
				err = s.Host.Ping(addr)
			default:
				_, _, err = s.Ctnet("exec", from, "ping", "-c1", "-W1", addr)
			}
			if err == nil {
				return true
			}
		}
		return false
	}
	for _, c := range []struct {
		name      string
		from, to  string
		addr      string // where the real packet goes
		port      string // "" for ping
		reaches   string // "" for dropped; a word for TCP; "yes" for ping
		mustSayIn []string
	}{
		{"isolation", "a1", "b1", "10.51.0.2", "", "", []string{"network isolation"}},
		{"isolation tcp", "a1", "b1", "10.51.0.2", "80", "", []string{"between_bridges"}},
		{"icc=false", "n1", "n2", "10.52.0.3", "", "", []string{"icc=false"}},
		{"icc=false tcp", "n1", "n2", "10.52.0.3", "80", "", []string{"isolated"}},
		{"icc=false gateway", "n1", "10.52.0.1", "10.52.0.1", "", "yes", nil},
		{"internal out", "i1", "outside", sandbox.UpstreamAddr, "", "", []string{"--internal"}},
		{"internal sibling", "i1", "i2", "10.53.0.3", "80", "i2", nil},
		{"masquerade", "a1", "outside", sandbox.UpstreamAddr, "", "yes", []string{"masquerade"}},
		{"published port", "outside", sandbox.HostAddr, sandbox.HostAddr, "8080", "web", []string{"ports4_any", "DNAT to 172.17.0.2:80"}},
		{"published port from the host", "host", sandbox.HostAddr, sandbox.HostAddr, "8080", "web", nil},
		{"127.0.0.1 port from the host", "host", "127.0.0.1", "127.0.0.1", "8081", "web", []string{"ports4_addr", "route_localnet"}},
		{"127.0.0.1 port from outside", "outside", sandbox.HostAddr, sandbox.HostAddr, "8081", "the-host", []string{"published only on 127.0.0.1"}},
		{"hairpin", "web", sandbox.HostAddr, sandbox.HostAddr, "8080", "web", []string{"hairpin", "intra_bridge"}},
		{"hairpin from a sibling", "db", sandbox.HostAddr, sandbox.HostAddr, "8080", "web", []string{"hairpin"}},
		{"published port of another network", "a1", sandbox.HostAddr, sandbox.HostAddr, "8080", "web", []string{"between_bridges"}},
		{"unpublished port from outside", "outside", "172.17.0.2", "172.17.0.2", "80", "", []string{"only published ports"}},
		{"same network", "web", "db", "172.17.0.3", "80", "db", nil},
	} {
		args := []string{c.from, c.to}
		if c.port != "" {
			args = append(args, c.port+"/tcp")
		}
		r := trace(args...)
		var real string
		if c.port == "" {
			if pingFrom(c.from, c.addr) {
				real = "yes"
			}
		} else {
			for range 3 {
				if real = tcpFrom(c.from, c.addr, c.port); real != "" || c.reaches == "" {
					break
				}
			}
		}
		if real != c.reaches {
			t.Errorf("%s: the real packet reached %q, want %q", c.name, real, c.reaches)
		}
		if r.Delivered != (real != "") {
			t.Errorf("%s: trace says delivered=%v (%s), the real packet reached %q", c.name, r.Delivered, r.Verdict, real)
		}
		if c.port != "" && real != "" && !strings.Contains(r.Reaches, real) && !(real == "the-host" && r.Reaches == "the host") {
			t.Errorf("%s: trace says it reaches %q, the real packet reached %q", c.name, r.Reaches, real)
		}
		text := r.Verdict
		for _, st := range r.Steps {
			text += "\n" + st.Where + ": " + st.What
		}
		for _, w := range c.mustSayIn {
			if !strings.Contains(text, w) {
				t.Errorf("%s: trace does not say %q:\n%s", c.name, w, text)
			}
		}
	}
	// The 127.0.0.1 guard: a neighbour that sends to 127.0.0.1 through the
	// host's MAC (Docker's leak of ports published on 127.0.0.1).
	for _, c := range [][]string{
		{"ip", "route", "del", "local", "127.0.0.0/8", "dev", "lo", "table", "local"},
		{"sysctl", "-qw", "net.ipv4.conf.eth0.route_localnet=1"},
		{"ip", "route", "add", "127.0.0.1/32", "via", sandbox.HostAddr, "dev", "eth0"},
	} {
		s.Upstream.MustRun(c[0], c[1:]...)
	}
	if r := trace("outside", "127.0.0.1", "8081/tcp"); r.Delivered || !strings.Contains(r.Verdict, "loopback destination from the wire") {
		t.Errorf("trace outside 127.0.0.1 8081/tcp: %+v", r)
	}
	if got := tcpFrom("outside", "127.0.0.1", "8081"); got != "" {
		t.Errorf("a neighbour reached 127.0.0.1:8081 of the host: %q", got)
	}

	// The text form and bad input.
	for _, args := range [][]string{{"web", sandbox.HostAddr, "8080/tcp"}, {"host", "127.0.0.1", "8081/tcp"}, {"n1", "n2"}, {"i1", "outside"}, {"outside", sandbox.HostAddr, "8081/tcp"}} {
		t.Logf("ctnet trace %s\n%s", strings.Join(args, " "), s.MustCtnet(append([]string{"trace"}, args...)...))
	}
	out := s.MustCtnet("trace", "outside", sandbox.HostAddr, "8080/tcp")
	if !strings.Contains(out, "=> DELIVERED: reaches container \"web\" at 172.17.0.2:80") {
		t.Errorf("trace text:\n%s", out)
	}
	for _, bad := range [][]string{{"nosuch", "web"}, {"web", "/run/netns/nosuch"}, {"web", "db", "80/icmp"}, {"web", "db", "0/tcp"}, {"web"}} {
		if _, e, err := s.Ctnet(append([]string{"trace"}, bad...)...); err == nil || strings.Count(strings.TrimSpace(e), "\n") > 0 {
			t.Errorf("trace %v: %v %q", bad, err, e)
		}
	}
}
