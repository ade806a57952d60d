package e2e

import (
	"bytes"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/ovsdb/ovstest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// ovsEnv is a sandbox with a private Open vSwitch (ovsdb-server and
// ovs-vswitchd in the sandbox host, their sockets in a temp dir) that ctnet
// finds through OVS_RUNDIR, as ovs-vsctl would.
type ovsEnv struct {
	*sandbox.Sandbox
	t   *testing.T
	ovs *ovstest.OVS
}

func newOVSEnv(t *testing.T) *ovsEnv {
	t.Helper()
	ovstest.Require(t)
	s := sandbox.New(t)
	return &ovsEnv{Sandbox: s, t: t, ovs: ovstest.Start(t, s.Host)}
}

func (e *ovsEnv) ctnet(args ...string) (string, string, error) {
	e.t.Helper()
	cmd := e.Host.Command(sandbox.Binary(e.t), args...)
	cmd.Env = append(e.Env(), "OVS_RUNDIR="+e.ovs.Dir)
	var o, er bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &er
	err := cmd.Run()
	return o.String(), er.String(), err
}

func (e *ovsEnv) must(args ...string) string {
	e.t.Helper()
	o, er, err := e.ctnet(args...)
	if err != nil {
		e.t.Fatalf("ctnet %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, o, er)
	}
	return o
}

func TestOVSNetwork(t *testing.T) {
	t.Parallel()
	e := newOVSEnv(t)
	e.must("network", "create", "-d", "ovs", "--subnet", "10.70.0.0/24", "sw")
	a, b := e.Netns(), e.Netns()
	e.must("network", "connect", "sw", "--netns", a.NetPath())
	e.must("network", "connect", "sw", "--netns", b.NetPath())
	out := e.must("network", "inspect", "-f", `{{index .Options "ovs.bridge"}} {{index .Options "ovs.datapath"}}`, "sw")
	if strings.TrimSpace(out) != "ctnet-ovs netdev" {
		t.Errorf("inspect: bridge and datapath %q, want ctnet-ovs netdev (no openvswitch module here)", out)
	}
	t.Log(e.ovs.MustVsctl("show"))
	for _, c := range []struct {
		from *sandbox.NS
		to   string
	}{{a, "10.70.0.3"}, {b, "10.70.0.2"}, {a, "10.70.0.1"}, {e.Host, "10.70.0.2"}, {a, sandbox.UpstreamAddr}, {b, sandbox.FarAddr}} {
		if err := c.from.Ping(c.to); err != nil {
			t.Error(err)
		}
	}
	if src := observedSource(t, e.Sandbox, a); src != sandbox.HostAddr {
		t.Errorf("upstream saw source %q, want the host's %s (masquerade)", src, sandbox.HostAddr)
	}
}
