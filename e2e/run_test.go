package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/image/imagetest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// withBusybox imports a tiny busybox image into the sandbox's ctnet.
func withBusybox(t *testing.T, s *sandbox.Sandbox) {
	t.Helper()
	tarball := filepath.Join(s.Dir, "busybox.tar")
	if err := os.WriteFile(tarball, imagetest.BusyboxRootfsTar(t), 0o644); err != nil {
		t.Fatal(err)
	}
	s.MustCtnet("image", "import", tarball, "busybox")
}

func TestRunNetworkModes(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)

	// bridge (the default): eth0 on ctnet0, NAT to the outside.
	if out := s.MustCtnet("run", "--rm", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet 172.17.0.2/16") {
		t.Errorf("bridge mode eth0: %s", out)
	}
	s.MustCtnet("run", "--rm", "busybox", "ping", "-c1", "-W2", sandbox.FarAddr)

	// host: the host's own interfaces and addresses.
	if out := s.MustCtnet("run", "--rm", "--network", "host", "busybox", "ip", "-o", "-4", "addr"); !strings.Contains(out, sandbox.HostAddr+"/24") {
		t.Errorf("host mode: %s", out)
	}
	// none: only lo.
	if out := s.MustCtnet("run", "--rm", "--network", "none", "busybox", "ip", "-o", "link"); strings.Count(out, "\n") != 1 || !strings.Contains(out, "lo:") {
		t.Errorf("none mode: %s", out)
	}
	// A user network.
	s.MustCtnet("network", "create", "--subnet", "10.30.0.0/24", "web")
	if out := s.MustCtnet("run", "--rm", "--network", "web", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet 10.30.0.2/24") {
		t.Errorf("user network: %s", out)
	}
	// container:NAME shares the namespace: same eth0, and 127.0.0.1 reaches it.
	s.MustCtnet("run", "-d", "--name", "srv", "busybox", "nc", "-ll", "-p", "8080", "-e", "echo", "hello-from-srv")
	srvAddr := s.MustCtnet("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "srv")
	if out := s.MustCtnet("run", "--rm", "--network", "container:srv", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, strings.TrimSpace(srvAddr)+"/16") {
		t.Errorf("container mode eth0 %s, want srv's %s", out, srvAddr)
	}
	out := s.MustCtnet("run", "--rm", "--network", "container:srv", "busybox", "sh", "-c", "for i in 1 2 3 4 5 6 7 8 9 10; do nc 127.0.0.1 8080 && exit 0; sleep 0.2; done; exit 1")
	if !strings.Contains(out, "hello-from-srv") {
		t.Errorf("127.0.0.1 in shared namespace: %q", out)
	}
	// Containers on the bridge reach each other.
	s.MustCtnet("run", "--rm", "busybox", "ping", "-c1", "-W2", strings.TrimSpace(srvAddr))

	s.MustCtnet("rm", "-f", "srv")
	if ps := s.MustCtnet("ps", "-aq"); ps != "" {
		t.Errorf("containers left: %s", ps)
	}
	assertClean(t, s, "ctnet0")
}

func TestRunEtcFiles(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	out := s.MustCtnet("run", "--rm", "--name", "box", "--hostname", "boxhost", "--dns", "203.0.113.53",
		"--add-host", "db:10.1.2.3", "busybox", "sh", "-c", "cat /etc/hosts; echo ---; cat /etc/hostname; echo ---; cat /etc/resolv.conf")
	parts := strings.Split(out, "---\n")
	if len(parts) != 3 {
		t.Fatalf("output: %s", out)
	}
	for _, want := range []string{"127.0.0.1\tlocalhost", "10.1.2.3\tdb", "172.17.0.2\tboxhost\n"} {
		if !strings.Contains(parts[0], want) {
			t.Errorf("/etc/hosts lacks %q:\n%s", want, parts[0])
		}
	}
	if parts[1] != "boxhost\n" {
		t.Errorf("/etc/hostname = %q", parts[1])
	}
	if !strings.HasPrefix(parts[2], "nameserver 203.0.113.53\n") {
		t.Errorf("/etc/resolv.conf = %q", parts[2])
	}
}

func TestContainerLifecycle(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	id := strings.TrimSpace(s.MustCtnet("run", "-d", "--name", "loop", "busybox", "sh", "-c", "echo started; while true; do sleep 0.1; done"))
	if len(id) != 64 {
		t.Fatalf("run -d printed %q", id)
	}
	if ps := s.MustCtnet("ps", "--format", "{{.Names}} {{.State}} {{.Networks}}"); ps != "loop running bridge\n" {
		t.Errorf("ps: %q", ps)
	}
	var insp []struct {
		Name            string
		State           struct{ Running bool }
		NetworkSettings struct {
			IPAddress, Gateway, MacAddress string
			Networks                       map[string]struct{ IPAddress, MacAddress string }
		}
	}
	if err := json.Unmarshal([]byte(s.MustCtnet("inspect", "loop")), &insp); err != nil {
		t.Fatal(err)
	}
	ns := insp[0].NetworkSettings
	if insp[0].Name != "/loop" || !insp[0].State.Running || ns.IPAddress != "172.17.0.2" || ns.Gateway != "172.17.0.1" ||
		ns.MacAddress != "02:42:ac:11:00:02" || ns.Networks["bridge"].IPAddress != "172.17.0.2" {
		t.Errorf("inspect: %+v", insp[0])
	}
	if out := s.MustCtnet("exec", "loop", "cat", "/etc/hostname"); strings.TrimSpace(out) != id[:12] {
		t.Errorf("exec hostname: %q", out)
	}
	if o, _, err := s.Ctnet("exec", "loop", "sh", "-c", "exit 5"); err == nil {
		t.Errorf("exec exit 5 succeeded: %s", o)
	}
	if out := s.MustCtnet("logs", "loop"); out != "started\n" {
		t.Errorf("logs: %q", out)
	}
	if _, e, err := s.Ctnet("rm", "loop"); err == nil || !strings.Contains(e, "You cannot remove a running container") {
		t.Errorf("rm of a running container: %v %s", err, e)
	}
	s.MustCtnet("stop", "-t", "1", "loop")
	if ps := s.MustCtnet("ps", "-a", "--format", "{{.Names}} {{.State}}"); ps != "loop exited\n" {
		t.Errorf("ps -a after stop: %q", ps)
	}
	// A stopped container holds no address.
	if c := s.MustCtnet("network", "inspect", "-f", "{{len .Containers}}", "bridge"); strings.TrimSpace(c) != "0" {
		t.Errorf("stopped container still on the bridge: %s", c)
	}
	s.MustCtnet("rm", "loop")

	// logs -f follows the output until the container ends.
	s.MustCtnet("run", "-d", "--name", "talker", "busybox", "sh", "-c", "for i in 1 2 3; do echo line$i; sleep 0.3; done")
	if out := s.MustCtnet("logs", "-f", "talker"); out != "line1\nline2\nline3\n" {
		t.Errorf("logs -f: %q", out)
	}
	s.MustCtnet("rm", "talker")

	// --rm -d: the container removes itself when it ends.
	s.MustCtnet("run", "-d", "--rm", "--name", "brief", "busybox", "true")
	waitFor(t, func() bool { return s.MustCtnet("ps", "-aq") == "" }, "the --rm container to remove itself")
	assertClean(t, s, "ctnet0")
}

func TestReconcileCleansKilledContainer(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	s.MustCtnet("run", "-d", "--name", "victim", "busybox", "sleep", "600")
	pid := strings.TrimSpace(s.MustCtnet("inspect", "-f", "{{.State.Pid}}", "victim"))
	// Kill the container's monitor (its parent: the monitor is its
	// subreaper) and then the container, behind ctnet's back.
	monitor := strings.TrimSpace(s.Host.MustRun("ps", "-o", "ppid=", "-p", pid))
	if args := s.Host.MustRun("ps", "-o", "args=", "-p", monitor); !strings.HasPrefix(args, "ctnet-monitor") {
		t.Fatalf("parent of the container is %q, not its monitor", args)
	}
	s.Host.MustRun("kill", "-9", monitor, pid)
	waitFor(t, func() bool {
		return strings.TrimSpace(s.MustCtnet("inspect", "-f", "{{.State.Running}}", "victim")) == "false"
	}, "the container to die")
	out := s.MustCtnet("system", "reconcile")
	if !strings.Contains(out, "released the network of container victim") {
		t.Errorf("reconcile said:\n%s", out)
	}
	s.MustCtnet("rm", "victim")
	assertClean(t, s, "ctnet0")
}

func waitFor(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for i := 0; i < 100; i++ {
		if ok() {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out waiting for %s", what)
}
