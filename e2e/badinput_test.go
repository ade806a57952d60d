package e2e

import (
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// snapshot is what a bad command must not change: links and addresses, the
// firewall table, and ctnet's view of its networks and endpoints.
func snapshot(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	return s.Host.MustRun("ip", "-o", "addr") + s.Host.MustRun("ip", "-o", "link") +
		s.Host.MustRun("nft", "list", "table", "inet", "ctnet") +
		s.MustCtnet("network", "inspect", "bridge", "web")
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	// A route on the host that a new network must not overlap.
	s.Host.MustRun("ip", "route", "add", "10.99.0.0/16", "via", sandbox.UpstreamAddr)
	s.MustCtnet("network", "create", "--subnet", "10.10.0.0/24", "web")
	used := s.Netns()
	s.MustCtnet("network", "connect", "web", "--netns", used.NetPath(), "--ip", "10.10.0.9")
	other := s.Netns()
	notNS := s.Dir + "/not-a-namespace"
	s.Host.MustRun("touch", notNS)

	cases := []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "--subnet", "10.1.0.0/33", "x"}, "subnet"},
		{[]string{"network", "create", "--subnet", "banana", "x"}, "banana"},
		{[]string{"network", "create", "--subnet", "10.1.0.0/24", "--gateway", "10.2.0.1", "x"}, "outside"},
		{[]string{"network", "create", "--subnet", "10.10.0.0/16", "x"}, `overlaps network "web"`},
		{[]string{"network", "create", "--subnet", "10.99.5.0/24", "x"}, "route or address on the host"},
		{[]string{"network", "create", "web"}, "already exists"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.name=abcdefghijklmnop", "x"}, "abcdefghijklmnop"},
		{[]string{"network", "create", "-o", "com.example.unknown=1", "x"}, "unknown option"},
		{[]string{"network", "create", "--driver", "overlay9", "x"}, "unknown driver"},
		{[]string{"network", "create", "bad/name"}, "invalid name"},
		{[]string{"network", "create", "host"}, "reserved"},
		{[]string{"network", "rm", "web"}, "in use"},
		{[]string{"network", "rm", "bridge"}, "cannot be removed"},
		{[]string{"network", "rm", "nosuch"}, "not found"},
		{[]string{"network", "inspect", "nosuch"}, "not found"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.20.0.5"}, "outside"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.9"}, "already in use"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.0"}, "10.10.0.0"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.1"}, "gateway"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.255"}, "broadcast"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ifname", "averyveryverylongname"}, "averyveryverylongname"},
		{[]string{"network", "connect", "web", "--netns", used.NetPath()}, "already attached"},
		{[]string{"network", "connect", "web", "--netns", notNS}, "not a network namespace"},
		{[]string{"network", "connect", "web", "--netns", "/nonexistent/ns"}, "does not exist"},
		{[]string{"network", "connect", "nosuch", "--netns", other.NetPath()}, "not found"},
		{[]string{"network", "connect", "web"}, "--netns"},
		{[]string{"network", "disconnect", "web", "--netns", other.NetPath()}, "not connected"},
		{[]string{"bridge", "show", "nosuch0"}, "nosuch0"},
	}
	before := snapshot(t, s)
	for _, c := range cases {
		o, e, err := s.Ctnet(c.args...)
		if err == nil {
			t.Errorf("ctnet %s: succeeded, want an error\n%s", strings.Join(c.args, " "), o)
			continue
		}
		if !strings.Contains(e, c.want) || !strings.HasPrefix(e, "Error: ") || strings.Count(strings.TrimSpace(e), "\n") != 0 {
			t.Errorf("ctnet %s:\n%s\nwant one line \"Error: …\" mentioning %q", strings.Join(c.args, " "), e, c.want)
		}
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("bad input changed the host or the store:\nbefore:\n%s\nafter:\n%s", before, after)
	}
}

func TestNotRoot(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "ls")
	cmd := s.Host.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sandbox.Binary(t),
		"--root", s.Root, "--run-root", s.RunRoot, "network", "create", "x")
	out, err := cmd.CombinedOutput()
	if err == nil || !strings.Contains(string(out), "must run as root") {
		t.Errorf("as nobody: err=%v\n%s", err, out)
	}
}

func TestAutoSubnetAvoidsHostRoutes(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.Host.MustRun("ip", "route", "add", "172.17.5.0/24", "via", sandbox.UpstreamAddr)
	s.Host.MustRun("ip", "addr", "add", "172.18.0.9/16", "dev", "lo")
	got := s.MustCtnet("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}}{{end}}", "bridge")
	if strings.TrimSpace(got) != "172.19.0.0/16" {
		t.Errorf("default subnet %s, want 172.19.0.0/16 (172.17 is routed, 172.18 is on lo)", got)
	}
}
