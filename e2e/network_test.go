package e2e

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

func TestDefaultNetwork(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	out := s.MustCtnet("network", "ls")
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 4 || !strings.HasPrefix(lines[0], "NETWORK ID") {
		t.Fatalf("network ls:\n%s", out)
	}
	if f := strings.Fields(lines[1]); f[1] != "bridge" || f[2] != "bridge" || f[3] != "local" {
		t.Errorf("first row = %q, want the default network bridge", lines[1])
	}
	var nets []struct {
		Name string
		IPAM struct {
			Config []struct{ Subnet, Gateway string }
		}
		Options map[string]string
	}
	if err := json.Unmarshal([]byte(s.MustCtnet("network", "inspect", "bridge")), &nets); err != nil {
		t.Fatal(err)
	}
	n := nets[0]
	if n.IPAM.Config[0].Subnet != "172.17.0.0/16" || n.IPAM.Config[0].Gateway != "172.17.0.1" {
		t.Errorf("default subnet = %+v, want 172.17.0.0/16 via 172.17.0.1", n.IPAM.Config)
	}
	if n.Options["com.docker.network.bridge.name"] != "ctnet0" {
		t.Errorf("bridge name = %q", n.Options["com.docker.network.bridge.name"])
	}
	// The gateway lives on the bridge, which has the uplink's MTU.
	link := s.Host.MustRun("ip", "-o", "addr", "show", "dev", "ctnet0")
	if !strings.Contains(link, "172.17.0.1/16") {
		t.Errorf("ctnet0 addresses: %s", link)
	}
	if l := s.Host.MustRun("ip", "-o", "link", "show", "dev", "ctnet0"); !strings.Contains(l, "mtu 1400") {
		t.Errorf("ctnet0: %s", l)
	}
}

func TestConnectPingMasquerade(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	a, b := s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "bridge", "--netns", a.NetPath())
	s.MustCtnet("network", "connect", "bridge", "--netns", b.NetPath(), "--ip", "172.17.0.50")

	ipa := addrOf(t, a, "eth0")
	if ipa != "172.17.0.2" {
		t.Errorf("first container address = %s, want 172.17.0.2", ipa)
	}
	if got := addrOf(t, b, "eth0"); got != "172.17.0.50" {
		t.Errorf("static address = %s", got)
	}
	if l := a.MustRun("ip", "-o", "link", "show", "eth0"); !strings.Contains(l, "mtu 1400") || !strings.Contains(l, "02:42:ac:11:00:02") {
		t.Errorf("eth0 in container: %s", l)
	}
	if r := a.MustRun("ip", "route", "show", "default"); !strings.Contains(r, "via 172.17.0.1 dev eth0") {
		t.Errorf("default route: %s", r)
	}
	for _, c := range []struct {
		from *sandbox.NS
		to   string
	}{{a, "172.17.0.50"}, {b, ipa}, {s.Host, ipa}, {s.Host, "172.17.0.50"}, {a, sandbox.UpstreamAddr}, {b, sandbox.FarAddr}} {
		if err := c.from.Ping(c.to); err != nil {
			t.Error(err)
		}
	}
	// Masquerade: the outside sees the host's address, not the container's.
	src := observedSource(t, s, a)
	if src != sandbox.HostAddr {
		t.Errorf("upstream saw source %s, want the host's %s", src, sandbox.HostAddr)
	}
	// Forwarding was turned on in the sandbox host, by ctnet.
	if f := s.Host.MustRun("cat", "/proc/sys/net/ipv4/ip_forward"); strings.TrimSpace(f) != "1" {
		t.Errorf("ip_forward = %s", f)
	}
}

func addrOf(t *testing.T, n *sandbox.NS, dev string) string {
	t.Helper()
	out := n.MustRun("ip", "-o", "-4", "addr", "show", "dev", dev)
	f := strings.Fields(out)
	for i, w := range f {
		if w == "inet" {
			return strings.Split(f[i+1], "/")[0]
		}
	}
	t.Fatalf("no IPv4 address on %s: %s", dev, out)
	return ""
}

// observedSource connects from ns to a TCP listener on the upstream host and
// returns the source address the listener saw.
func observedSource(t *testing.T, s *sandbox.Sandbox, from *sandbox.NS) string {
	t.Helper()
	srv := s.Upstream.Command("socat", "-T5", "TCP-LISTEN:7777,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var out string
	for i := 0; i < 50; i++ {
		o, err := from.Run("socat", "-T2", "-", "TCP:"+sandbox.UpstreamAddr+":7777,connect-timeout=1")
		if err == nil && strings.TrimSpace(o) != "" {
			out = strings.TrimSpace(o)
			break
		}
		from.Run("sleep", "0.1")
	}
	return out
}
