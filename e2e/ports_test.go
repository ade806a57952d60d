package e2e

import (
	"os"
	"strings"
	"testing"

	"github.com/cilium/ebpf"
	"github.com/cilium/ebpf/link"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// tcpGet connects from ns to addr:port and returns what the server said.
func tcpGet(ns *sandbox.NS, addr, port string) string {
	if strings.Contains(addr, ":") {
		addr = "[" + addr + "]"
	}
	out, _ := ns.Run("socat", "-T2", "-", "TCP:"+addr+":"+port+",connect-timeout=2")
	return strings.TrimSpace(out)
}

// serve runs a container answering every TCP (and UDP) connection on port 80 with word.
func serve(t *testing.T, s *sandbox.Sandbox, name, word string, flags ...string) {
	t.Helper()
	args := append([]string{"run", "-d", "--name", name}, flags...)
	args = append(args, "host", "sh", "-c",
		"socat UDP-RECVFROM:80,fork SYSTEM:'echo "+word+"-udp' & exec socat TCP-LISTEN:80,fork,reuseaddr SYSTEM:'echo "+word+"'")
	s.MustCtnet(args...)
	waitFor(t, func() bool {
		out, _, _ := s.Ctnet("exec", name, "socat", "-T1", "-", "TCP:127.0.0.1:80")
		return strings.Contains(out, word)
	}, name+" to listen")
}

func TestPublishedPorts(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.Host.MustRun("ip", "addr", "add", "203.0.113.3/24", "dev", "eth0")
	serve(t, s, "web", "hello", "-p", "8080:80", "-p", "8080:80/udp", "-p", "127.0.0.1:8081:80", "-p", "203.0.113.2:8082:80",
		"-p", "9000:9000/sctp", "-p", "8100-8102:8100-8102", "-p", "80", "-p", "[::1]:8083:80", "-p", "[::1]:8083:80/udp")
	h := sandbox.HostAddr

	port := s.MustCtnet("port", "web")
	for _, want := range []string{"80/tcp -> 0.0.0.0:8080", "80/udp -> 0.0.0.0:8080", "80/tcp -> 127.0.0.1:8081", "80/tcp -> 203.0.113.2:8082", "9000/sctp -> 0.0.0.0:9000", "8101/tcp -> 0.0.0.0:8101", "80/tcp -> [::1]:8083", "80/udp -> [::1]:8083"} {
		if !strings.Contains(port, want+"\n") {
			t.Errorf("ctnet port lacks %q:\n%s", want, port)
		}
	}
	ephemeral := ""
	for _, l := range strings.Split(port, "\n") {
		if strings.HasPrefix(l, "80/tcp -> 0.0.0.0:") && !strings.HasSuffix(l, ":8080") {
			ephemeral = strings.TrimPrefix(l, "80/tcp -> 0.0.0.0:")
		}
	}
	if ephemeral == "" {
		t.Fatalf("no ephemeral host port for -p 80:\n%s", port)
	}
	if ps := s.MustCtnet("ps", "--format", "{{.Ports}}"); !strings.Contains(ps, "0.0.0.0:8080->80/tcp") {
		t.Errorf("ps PORTS: %s", ps)
	}

	reach := []struct {
		from       *sandbox.NS
		addr, port string
	}{
		{s.Upstream, h, "8080"},    // from another host
		{s.Upstream, h, ephemeral}, // the ephemeral one
		{s.Upstream, "203.0.113.3", "8080"},
		{s.Host, h, "8080"}, // from the host through its own addresses
		{s.Host, "172.17.0.1", "8080"},
		{s.Host, "127.0.0.1", "8080"}, // through 127.0.0.1 on the host
		{s.Host, "127.0.0.1", "8081"},
		{s.Upstream, h, "8082"},
		{s.Host, "::1", "8083"}, // [::1] reaches an IPv4-only container too
		{s.Host, "::1", "8080"}, // and answers for every address, as Docker's proxy does
	}
	for _, r := range reach {
		if got := tcpGet(r.from, r.addr, r.port); got != "hello" {
			t.Errorf("%s:%s from ns %d: got %q, want hello", r.addr, r.port, r.from.PID, got)
		}
	}
	if out := udpAsk(s.Upstream, h+":8080"); !strings.Contains(out, "hello-udp") {
		t.Errorf("udp 8080 from upstream: %q", out)
	}
	if out := udpAsk(s.Host, "[::1]:8083"); !strings.Contains(out, "hello-udp") {
		t.Errorf("udp [::1]:8083 from the host: %q", out)
	}
	// Hairpin: the container itself and a sibling through the host's address.
	if out, _, _ := s.Ctnet("exec", "web", "socat", "-T2", "-", "TCP:"+h+":8080"); !strings.Contains(out, "hello") {
		t.Errorf("hairpin from the same container: %q", out)
	}
	if out, _, _ := s.Ctnet("run", "--rm", "host", "socat", "-T2", "-", "TCP:"+h+":8080"); !strings.Contains(out, "hello") {
		t.Errorf("hairpin from another container: %q", out)
	}
	// No leaks: 127.0.0.1 ports are not reachable from outside, an address-bound
	// port not on the host's other addresses.
	noReach := []struct {
		from       *sandbox.NS
		addr, port string
	}{
		{s.Upstream, h, "8081"},
		{s.Upstream, "203.0.113.3", "8082"},
		{s.Host, "127.0.0.1", "8082"},
		{s.Upstream, h, "8083"},
		{s.Host, "127.0.0.1", "8083"},
	}
	for _, r := range noReach {
		if got := tcpGet(r.from, r.addr, r.port); got == "hello" {
			t.Errorf("%s:%s is reachable from ns %d", r.addr, r.port, r.from.PID)
		}
	}
	// No proxy process: what runs in the sandbox's network namespace is the
	// container's monitor and nothing that listens for it.
	self := strings.TrimSpace(s.Host.MustRun("readlink", "/proc/self/ns/net"))
	procs := s.Host.MustRun("sh", "-c", `for p in /proc/[0-9]*; do [ "$(readlink $p/ns/net)" = "`+self+`" ] && cat $p/comm; done; true`)
	if strings.Contains(procs, "proxy") {
		t.Errorf("a proxy runs in the sandbox:\n%s", procs)
	}
}

// hostListener starts a socat listening on the sandbox host (address as
// socat takes it), stopped when the test ends, and waits until `ss -ltn`
// shows local.
func hostListener(t *testing.T, s *sandbox.Sandbox, address, local string) {
	t.Helper()
	l := s.Host.Command("socat", address, "-")
	if err := l.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Process.Kill(); l.Wait() })
	waitFor(t, func() bool { return strings.Contains(s.Host.MustRun("ss", "-ltn"), local) }, "the host listener on "+local)
}

func TestPortConflictsChangeNothing(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	serve(t, s, "a", "a", "-p", "8080:80")
	before := s.Host.MustRun("nft", "list", "table", "inet", "ctnet")
	if _, e, err := s.Ctnet("run", "-d", "--name", "b", "-p", "8080:80", "host", "sleep", "60"); err == nil || !strings.Contains(e, `already published by container "a"`) {
		t.Errorf("same host port: %v %s", err, e)
	}
	// A process on the host already listening.
	hostListener(t, s, "TCP-LISTEN:9090,reuseaddr", ":9090")
	if _, e, err := s.Ctnet("run", "-d", "--name", "c", "-p", "9090:80", "host", "sleep", "60"); err == nil || !strings.Contains(e, "already listens") {
		t.Errorf("host listener: %v %s", err, e)
	}
	if _, e, err := s.Ctnet("run", "-d", "-p", "70000:80", "host", "sleep", "60"); err == nil || !strings.Contains(e, "70000") {
		t.Errorf("bad port: %v %s", err, e)
	}
	// [::1] is served by rewriting TCP and UDP sockets; there is nothing to rewrite for SCTP.
	if _, e, err := s.Ctnet("run", "-d", "-p", "[::1]:8083:80/sctp", "host", "sleep", "60"); err == nil || !strings.Contains(e, "only tcp and udp") {
		t.Errorf("[::1] sctp: %v %s", err, e)
	}
	hostListener(t, s, "TCP6-LISTEN:9091,bind=[::1],reuseaddr", "[::1]:9091")
	for _, p := range []string{"[::1]:9091:80", "9091:80", "0.0.0.0:9091:80"} {
		if _, e, err := s.Ctnet("run", "-d", "-p", p, "host", "sleep", "60"); err == nil || !strings.Contains(e, "already listens") {
			t.Errorf("-p %s with a host listener on [::1]: %v %s", p, err, e)
		}
	}
	// a's port on every address answers on [::1] too.
	if _, e, err := s.Ctnet("run", "-d", "-p", "[::1]:8080:80", "host", "sleep", "60"); err == nil || !strings.Contains(e, `already published by container "a"`) {
		t.Errorf("[::1] of a port on every address: %v %s", err, e)
	}
	// Where the [::1] programs cannot be attached (here: a directory that is no cgroup).
	cmd := s.Host.Command(sandbox.Binary(t), "run", "-d", "-p", "[::1]:8084:80", "host", "sleep", "60")
	cmd.Env = append(s.Env(), "CTNET_CGROUP="+t.TempDir())
	if out, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(out), "is not a cgroup2 directory") {
		t.Errorf("[::1] without a cgroup: %v %s", err, out)
	}
	// a's port on every address is on :: too.
	if _, e, err := s.Ctnet("run", "-d", "-p", "[::]:8080:80", "host", "sleep", "60"); err == nil || !strings.Contains(e, `already published by container "a"`) {
		t.Errorf("[::] of a port on every address: %v %s", err, e)
	}
	if ps := s.MustCtnet("ps", "-a", "--format", "{{.Names}}"); ps != "a\n" {
		t.Errorf("containers after refused runs: %q", ps)
	}
	if after := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); after != before {
		t.Errorf("refused runs changed the firewall:\n%s\n---\n%s", before, after)
	}
}

func TestPortsRemovedExactlyAndRestored(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	serve(t, s, "keep", "keep", "-p", "8080:80", "-p", "[::1]:8081:80")
	base := s.Host.MustRun("nft", "list", "table", "inet", "ctnet")
	serve(t, s, "gone", "gone", "-p", "8090:80", "-p", "127.0.0.1:8091:80/udp", "-p", "[::1]:8092:80")
	if mid := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); mid == base {
		t.Fatal("publishing changed nothing in the table")
	}
	s.MustCtnet("rm", "-f", "gone")
	if after := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); after != base {
		t.Errorf("rm left elements behind:\n%s\n---\n%s", base, after)
	}
	if got := tcpGet(s.Host, "::1", "8092"); !strings.Contains(got, "refused") {
		t.Errorf("[::1]:8092 after rm: %q", got)
	}
	if got := tcpGet(s.Host, "::1", "8081"); got != "keep" {
		t.Errorf("[::1]:8081 of the other container: %q", got)
	}
	// Someone deletes ctnet's table; reconcile restores the rules and the port.
	s.Host.MustRun("nft", "delete", "table", "inet", "ctnet")
	if got := tcpGet(s.Upstream, sandbox.HostAddr, "8080"); got == "keep" {
		t.Fatal("port works without the table")
	}
	if out := s.MustCtnet("system", "reconcile"); !strings.Contains(out, "firewall:") {
		t.Errorf("reconcile said: %s", out)
	}
	if got := tcpGet(s.Upstream, sandbox.HostAddr, "8080"); got != "keep" {
		t.Errorf("after reconcile: %q", got)
	}
	if after := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); after != base {
		t.Errorf("restored table differs:\n%s\n---\n%s", base, after)
	}
	// Someone detaches the [::1] programs; reconcile attaches them again.
	if n := detachAll(t, s.Cgroup); n != 4 {
		t.Errorf("%d programs were attached, want 4", n)
	}
	if got := tcpGet(s.Host, "::1", "8081"); got == "keep" {
		t.Fatal("[::1] works without the programs")
	}
	if out := s.MustCtnet("system", "reconcile"); !strings.Contains(out, "attached the [::1] programs to "+s.Cgroup) ||
		!strings.Contains(out, "restored [::1] port tcp [::1]:8081 -> 172.17.0.2:80") {
		t.Errorf("reconcile said: %s", out)
	}
	if got := tcpGet(s.Host, "::1", "8081"); got != "keep" {
		t.Errorf("[::1]:8081 after reconcile: %q", got)
	}
	// The last [::1] port takes the programs with it.
	s.MustCtnet("rm", "-f", "keep")
	if n := detachAll(t, s.Cgroup); n != 0 {
		t.Errorf("%d programs still attached with no port on [::1]", n)
	}
}

// detachAll detaches every cgroup socket-address program on dir and says how many there were.
func detachAll(t *testing.T, dir string) int {
	t.Helper()
	cg, err := os.Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer cg.Close()
	n := 0
	for _, at := range []ebpf.AttachType{ebpf.AttachCGroupInet6Connect, ebpf.AttachCGroupUDP6Sendmsg,
		ebpf.AttachCGroupUDP6Recvmsg, ebpf.AttachCgroupInet6GetPeername} {
		res, err := link.QueryPrograms(link.QueryOptions{Target: int(cg.Fd()), Attach: at})
		if err != nil {
			t.Fatal(err)
		}
		for _, ap := range res.Programs {
			p, err := ebpf.NewProgramFromID(ap.ID)
			if err != nil {
				t.Fatal(err)
			}
			err = link.RawDetachProgram(link.RawDetachProgramOptions{Target: int(cg.Fd()), Program: p, Attach: at})
			p.Close()
			if err != nil {
				t.Fatal(err)
			}
			n++
		}
	}
	return n
}

func TestPublishedPortsIPv6(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "--ipv6", "--subnet", "10.71.0.0/24", "--subnet", "fd00:71::/64", "dual")
	s.MustCtnet("run", "-d", "--name", "web", "--network", "dual", "-p", "8080:80", "-p", "[2001:db8:113::2]:8081:80", "-p", "[::1]:8082:80",
		"host", "socat", "TCP6-LISTEN:80,fork,reuseaddr,ipv6only=0", "SYSTEM:echo hello6")
	waitFor(t, func() bool {
		out, _, _ := s.Ctnet("exec", "web", "socat", "-T1", "-", "TCP:127.0.0.1:80")
		return strings.Contains(out, "hello6")
	}, "web to listen")
	if port := s.MustCtnet("port", "web", "80"); port != "0.0.0.0:8080\n[2001:db8:113::2]:8081\n[::1]:8082\n[::]:8080\n" {
		t.Errorf("ctnet port web 80:\n%s", port)
	}
	// The first connection counts: the bridge must answer IPv6 neighbours at once.
	for _, c := range []struct {
		from       *sandbox.NS
		addr, port string
	}{
		{s.Upstream, sandbox.HostAddr6, "8080"},
		{s.Upstream, sandbox.HostAddr6, "8081"},
		{s.Upstream, sandbox.HostAddr, "8080"},
		{s.Host, sandbox.HostAddr6, "8080"},
		{s.Host, "::1", "8082"},
		{s.Host, "::1", "8080"}, // every IPv6 address includes [::1], as with Docker's proxy
	} {
		if got := tcpGet(c.from, c.addr, c.port); got != "hello6" {
			t.Errorf("[%s]:%s from ns %d: %q", c.addr, c.port, c.from.PID, got)
		}
	}
}

// Global options given as flags, not in the environment, reach what ctnet
// starts: the monitor's exit hook removes the container's [::1] port from
// the cgroup given with --cgroup (it used to drop --cgroup and leave the
// entry behind), and the resolver serves the run root given with --run-root.
func TestGlobalFlagsReachWhatCtnetStarts(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	if s.Cgroup == "" {
		t.Skip("no cgroup2 hierarchy for the [::1] programs")
	}
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	var env []string
	for _, kv := range s.Env() {
		if !strings.HasPrefix(kv, "CTNET_") {
			env = append(env, kv)
		}
	}
	flags := []string{"--root", s.Root, "--run-root", s.RunRoot, "--cgroup", s.Cgroup}
	ctnet := func(args ...string) string {
		t.Helper()
		cmd := s.Host.Command(sandbox.Binary(t), append(flags, args...)...)
		cmd.Env = env
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("ctnet %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	ctnet("network", "create", "--subnet", "10.77.0.0/24", "named")
	ctnet("run", "-d", "--name", "srv", "--network", "named", "busybox", "sleep", "600")
	if out := ctnet("run", "--rm", "--network", "named", "busybox", "nslookup", "srv", "127.0.0.11"); !strings.Contains(out, "10.77.0.2") {
		t.Errorf("the resolver started with flags does not answer for srv:\n%s", out)
	}
	ctnet("run", "-d", "--name", "brief", "-p", "[::1]:8083:80", "host", "sleep", "1")
	waitFor(t, func() bool {
		return strings.Contains(ctnet("ps", "-a", "--format", "{{.Names}} {{.State}}"), "brief exited")
	}, "the container to exit")
	waitFor(t, func() bool { return !strings.Contains(ctnet("port", "brief"), "8083") }, "its port to go")
	if out := ctnet("system", "reconcile"); out != "" {
		t.Errorf("reconcile after the container exited found what its exit left:\n%s", out)
	}
}

// A range of 2000 ports publishes (in batches no netlink message outgrows),
// answers, and goes with the container; the same range colliding with one
// port of another container is refused with one short line and changes
// nothing.
func TestPublishLargeRange(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	s.MustCtnet("run", "-d", "--name", "big", "-p", "20000-21999:20000-21999", "host", "socat", "TCP-LISTEN:21999,fork,reuseaddr", "SYSTEM:echo big")
	// as docker port: each port on 0.0.0.0 and on [::]
	if n := strings.Count(s.MustCtnet("port", "big"), "\n"); n != 4000 {
		t.Errorf("ctnet port big lists %d lines, want 4000 (2000 ports on 0.0.0.0 and [::])", n)
	}
	waitFor(t, func() bool {
		out, _ := s.Upstream.Run("socat", "-T2", "-", "TCP:"+sandbox.HostAddr+":21999")
		return strings.Contains(out, "big")
	}, "port 21999 to answer from the upstream")
	s.MustCtnet("run", "-d", "--name", "small", "-p", "22500:80", "busybox", "sleep", "600")
	state := func() string {
		return s.Host.MustRun("nft", "list", "table", "inet", "ctnet") + s.Host.MustRun("ip", "-o", "link") +
			s.MustCtnet("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Ports}}") + s.MustCtnet("network", "inspect", "bridge")
	}
	before := state()
	_, e, err := s.Ctnet("run", "-d", "--name", "clash", "-p", "21000-22999:21000-22999", "busybox", "sleep", "600")
	if err == nil || strings.Count(e, "\n") != 1 || len(e) > 400 || !strings.Contains(e, `container "`) {
		t.Errorf("a range over taken ports: err=%v stderr (%d bytes) %.400q", err, len(e), e)
	}
	if after := state(); after != before {
		t.Errorf("the refused run changed the host:\n%s", lineDiff(before, after))
	}
	s.MustCtnet("rm", "-f", "big")
	if nft := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); strings.Contains(nft, "21999") {
		t.Errorf("rm left the range's elements behind")
	}
}

// udpAsk sends a datagram to addr from ns and returns the answer; a few
// tries, as a datagram may be lost on a loaded machine.
func udpAsk(ns *sandbox.NS, addr string) string {
	var out string
	for range 5 {
		if out, _ = ns.Run("sh", "-c", "echo ping | socat -T2 - UDP:"+addr); out != "" {
			break
		}
	}
	return out
}

// A published host port is held while the container runs: a host service
// that binds it later fails instead of silently losing its clients to the
// container; with the container gone it binds.
func TestPublishedPortsAreHeld(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	s.MustCtnet("run", "-d", "--name", "holder", "-p", "8090:80", "-p", "8090:80/udp", "-p", "127.0.0.1:8091:80", "busybox", "sleep", "600")
	for _, a := range []string{"TCP-LISTEN:8090", "TCP-LISTEN:8090,reuseaddr", "UDP-RECV:8090", "TCP-LISTEN:8091,bind=127.0.0.1"} {
		var out string
		waitFor(t, func() bool {
			out, _ = s.Host.Run("timeout", "2", "socat", a, "/dev/null")
			return strings.Contains(out, "Address already in use")
		}, "binding "+a+" to fail while the container holds it")
	}
	s.MustCtnet("rm", "-f", "holder")
	waitFor(t, func() bool {
		out, _ := s.Host.Run("sh", "-c", "timeout 1 socat TCP-LISTEN:8090 /dev/null; echo $?")
		return strings.TrimSpace(out) == "124"
	}, "port 8090 to be free after rm")
}
