package e2e

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
)

func TestBridgeShowMatchesBrctl(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "web")
	for i := 0; i < 3; i++ {
		s.MustCtnet("network", "connect", "bridge", "--netns", s.Netns().NetPath())
	}
	s.MustCtnet("network", "connect", "web", "--netns", s.Netns().NetPath())
	for _, args := range [][]string{{}, {"ctnet0"}} {
		want := s.Host.MustRun("brctl", append([]string{"show"}, args...)...)
		got := s.MustCtnet(append([]string{"bridge", "show"}, args...)...)
		if got != want {
			t.Errorf("bridge show %v:\n%q\nbrctl show:\n%q", args, got, want)
		}
	}
}

func TestNetworkCreateInspectRm(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	id := strings.TrimSpace(s.MustCtnet("network", "create", "--subnet", "10.10.0.0/24", "--gateway", "10.10.0.254", "web"))
	if len(id) != 64 {
		t.Fatalf("create printed %q, want a 64-hex id", id)
	}
	auto := strings.TrimSpace(s.MustCtnet("network", "create", "auto"))
	if q := s.MustCtnet("network", "ls", "-q"); !strings.Contains(q, id[:12]) || !strings.Contains(q, auto[:12]) {
		t.Errorf("ls -q:\n%s", q)
	}
	if f := s.MustCtnet("network", "ls", "--format", "{{.Name}} {{.Driver}}"); f != "auto bridge\nbridge bridge\nhost host\nnone null\nweb bridge\n" {
		t.Errorf("ls --format:\n%s", f)
	}
	if got := s.MustCtnet("network", "inspect", "-f", "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{end}}", "web", "auto"); got != "10.10.0.0/24 10.10.0.254\n172.18.0.0/16 172.18.0.1\n" {
		t.Errorf("subnets:\n%s", got)
	}
	ns := s.Netns()
	s.MustCtnet("network", "connect", "web", "--netns", ns.NetPath())
	var nets []struct {
		Containers map[string]struct{ Name, MacAddress, IPv4Address string }
	}
	if err := json.Unmarshal([]byte(s.MustCtnet("network", "inspect", "web")), &nets); err != nil {
		t.Fatal(err)
	}
	if len(nets[0].Containers) != 1 {
		t.Fatalf("containers: %+v", nets[0].Containers)
	}
	for _, c := range nets[0].Containers {
		if c.IPv4Address != "10.10.0.1/24" || c.MacAddress != "02:42:0a:0a:00:01" || c.Name != ns.NetPath() {
			t.Errorf("endpoint %+v", c)
		}
	}
	if _, e, err := s.Ctnet("network", "rm", "web"); err == nil || !strings.Contains(e, "has active endpoints") {
		t.Errorf("rm of a network in use: err=%v %s", err, e)
	}
	s.MustCtnet("network", "disconnect", "web", "--netns", ns.NetPath())
	s.MustCtnet("network", "rm", "web", "auto")
	if l := s.Host.MustRun("ip", "-o", "link"); strings.Contains(l, "br-") || strings.Contains(l, "veth") {
		t.Errorf("links left after rm:\n%s", l)
	}
	if a := s.Host.MustRun("ip", "-o", "addr"); strings.Contains(a, "10.10.0.") || strings.Contains(a, "172.18.") {
		t.Errorf("addresses left after rm:\n%s", a)
	}
	if nft := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); strings.Contains(nft, "br-") || strings.Contains(nft, "10.10.0.0") {
		t.Errorf("firewall elements left after rm:\n%s", nft)
	}
	assertClean(t, s, "ctnet0")
}

func TestDetachAndReconcileLeaveNothing(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	a, b := s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "bridge", "--netns", a.NetPath())
	s.MustCtnet("network", "connect", "bridge", "--netns", b.NetPath())
	s.MustCtnet("network", "disconnect", "bridge", "--netns", a.NetPath())
	if l := a.MustRun("ip", "-o", "link"); strings.Contains(l, "eth0") {
		t.Errorf("eth0 still in detached namespace: %s", l)
	}
	// A namespace that disappears behind ctnet's back is released by reconcile.
	b.Kill()
	out := s.MustCtnet("system", "reconcile")
	if !strings.Contains(out, "released 172.17.0.3") {
		t.Errorf("reconcile said:\n%s", out)
	}
	if out := s.MustCtnet("system", "reconcile"); out != "" {
		t.Errorf("second reconcile still found work:\n%s", out)
	}
	assertClean(t, s, "ctnet0")
	// The freed addresses are handed out again.
	c := s.Netns()
	s.MustCtnet("network", "connect", "bridge", "--netns", c.NetPath(), "--ip", "172.17.0.3")
}

func TestReconcileRepairsKernel(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "--subnet", "10.20.0.0/24", "web")
	a := s.Netns()
	s.MustCtnet("network", "connect", "web", "--netns", a.NetPath())
	// Someone deletes the bridge and ctnet's table.
	s.Host.MustRun("ip", "link", "del", "ctnet0")
	s.Host.MustRun("nft", "delete", "table", "inet", "ctnet")
	out := s.MustCtnet("system", "reconcile")
	for _, w := range []string{"recreated bridge ctnet0", "firewall:"} {
		if !strings.Contains(out, w) {
			t.Errorf("reconcile output lacks %q:\n%s", w, out)
		}
	}
	if err := a.Ping(sandbox.UpstreamAddr); err != nil {
		t.Errorf("after reconcile: %v", err)
	}
	// A gateway address removed from the bridge comes back.
	s.Host.MustRun("ip", "addr", "del", "10.20.0.1/24", "dev", strings.TrimSpace(s.MustCtnet("network", "inspect", "-f", `{{index .Options "com.docker.network.bridge.name"}}`, "web")))
	if out := s.MustCtnet("system", "reconcile"); !strings.Contains(out, "gateway address 10.20.0.1/24 was missing") {
		t.Errorf("reconcile after the gateway was removed:\n%s", out)
	}
	if err := a.Ping("10.20.0.1"); err != nil {
		t.Errorf("gateway after reconcile: %v", err)
	}
	// A veth that no endpoint owns is removed.
	s.Host.MustRun("ip", "link", "add", "vethdead000", "master", "ctnet0", "type", "veth", "peer", "name", "vethdead001")
	if out := s.MustCtnet("system", "reconcile"); !strings.Contains(out, "deleted veth vethdead000") {
		t.Errorf("orphan veth: reconcile said:\n%s", out)
	}
}

// assertClean checks that the sandbox holds no endpoint of ctnet: no veth on
// the host, no lease or endpoint in the store (seen through inspect), no
// file left under the run directory but ctnet's own database and lock.
func assertClean(t *testing.T, s *sandbox.Sandbox, bridge string) {
	t.Helper()
	// Dropped namespaces are reclaimed by the kernel in the background.
	var l string
	for i := 0; i < 50; i++ {
		if l = s.Host.MustRun("ip", "-o", "link", "show", "master", bridge); strings.TrimSpace(l) == "" {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if strings.TrimSpace(l) != "" {
		t.Errorf("ports left on %s:\n%s", bridge, l)
	}
	if c := s.MustCtnet("network", "inspect", "-f", "{{len .Containers}}", "bridge"); strings.TrimSpace(c) != "0" {
		t.Errorf("bridge network still lists %s endpoints", c)
	}
	// ctnet.db, the lock files and the embedded resolver's dns.json*
	// belong to the instance, not to any endpoint.
	files := s.Host.MustRun("find", s.RunRoot, "-type", "f", "-not", "-name", "ctnet.db", "-not", "-name", "*lock", "-not", "-name", "dns.json*")
	if strings.TrimSpace(files) != "" {
		t.Errorf("files left in the run root:\n%s", files)
	}
}

// A mutating command that meets stale state repairs it by itself.
func TestStaleStateRepairedOnTheWay(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	a := s.Netns()
	s.MustCtnet("network", "connect", "bridge", "--netns", a.NetPath())
	s.Host.MustRun("ip", "link", "del", "ctnet0") // behind ctnet's back
	b := s.Netns()
	s.MustCtnet("network", "connect", "bridge", "--netns", b.NetPath())
	if err := b.Ping(sandbox.UpstreamAddr); err != nil {
		t.Errorf("after the automatic repair: %v", err)
	}
	if err := a.Ping("172.17.0.1"); err != nil {
		t.Errorf("the earlier endpoint was not reconnected: %v", err)
	}
	// The table is flushed away; publishing a port brings all of it back.
	s.Host.MustRun("nft", "delete", "table", "inet", "ctnet")
	s.MustCtnet("run", "-d", "--name", "p", "-p", "8080:80", "host", "sleep", "600")
	if err := b.Ping(sandbox.UpstreamAddr); err != nil {
		t.Errorf("masquerade not restored with the table: %v", err)
	}
	if nft := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); !strings.Contains(nft, "8080") {
		t.Errorf("the new port is not in the restored table:\n%s", nft)
	}
	// Deleted again; creating a network brings all of it back too.
	s.Host.MustRun("nft", "delete", "table", "inet", "ctnet")
	s.MustCtnet("network", "create", "later")
	if err := b.Ping(sandbox.UpstreamAddr); err != nil {
		t.Errorf("masquerade not restored by network create: %v", err)
	}
	if nft := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); !strings.Contains(nft, "8080") {
		t.Errorf("the port is not in the table restored by network create:\n%s", nft)
	}
	if out := s.MustCtnet("system", "reconcile"); out != "" {
		t.Errorf("reconcile still found work:\n%s", out)
	}
	s.MustCtnet("rm", "-f", "p")
}

// The run root deleted by hand under running containers: reconcile finds
// the containers it no longer knows by their cgroups and stops them, and
// cleans what they held.
func TestRunRootDeletedUnderContainers(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	s.MustCtnet("run", "-d", "--name", "lost", "busybox", "sleep", "600")
	pid := strings.TrimSpace(s.MustCtnet("inspect", "-f", "{{.State.Pid}}", "lost"))
	monitor := strings.TrimSpace(s.Host.MustRun("ps", "-o", "ppid=", "-p", pid))
	// Everything under the run root goes: mounts first (pins, the rootfs).
	s.Host.MustRun("sh", "-c", `grep " `+s.RunRoot+`/" /proc/self/mountinfo | awk '{print $5}' | sort -r | xargs -r -n1 umount -l; rm -rf `+s.RunRoot+`/*`)
	out := s.MustCtnet("system", "reconcile")
	if !strings.Contains(out, "removed the bundle of container") {
		t.Errorf("reconcile after the run root was deleted:\n%s", out)
	}
	for _, p := range []string{pid, monitor} {
		waitFor(t, func() bool { _, err := s.Host.Run("kill", "-0", p); return err != nil }, "process "+p+" of the lost container to end")
	}
	if left := s.Host.MustRun("find", filepath.Join(s.Root, "containers"), "-mindepth", "1", "-maxdepth", "1"); left != "" {
		t.Errorf("its writable layer remains:\n%s", left)
	}
	if o := s.MustCtnet("system", "reconcile"); o != "" {
		t.Errorf("second reconcile:\n%s", o)
	}
}
