package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/dockerdriver"
	"github.com/ctnet/ctnet/internal/dockertest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// dockerEnv is a sandbox with ctnet's Docker plugin and a real dockerd in it,
// started in the order the systemd unit gives them: the plugin first.
type dockerEnv struct {
	t      *testing.T
	s      *sandbox.Sandbox
	d      *dockertest.Dockerd
	plugin *exec.Cmd
	log    string
	starts int
}

const image = "ctbusybox"

func newDockerEnv(t *testing.T, flags ...string) *dockerEnv {
	t.Helper()
	if err := dockertest.Installed(); err != nil {
		t.Skip(err)
	}
	s := sandbox.New(t)
	e := &dockerEnv{t: t, s: s, log: filepath.Join(s.Dir, "plugin.log")}
	dockertest.PrivateRun(t, s)
	// dockerd leaves the FORWARD policy alone when forwarding is on
	// already; off is the worst case (a new namespace may inherit either).
	s.Host.MustRun("sysctl", "-qw", "net.ipv4.ip_forward=0")
	e.d = dockertest.New(t, s, append([]string{"--userland-proxy=false"}, flags...)...)
	t.Cleanup(func() { e.stopPlugin(syscall.SIGTERM) }) // after dockerd's cleanup
	e.startPlugin()
	e.d.Start()
	e.d.ImportBusybox(image)
	return e
}

// startPlugin runs `ctnet docker-plugin` and waits for its socket.
func (e *dockerEnv) startPlugin() {
	e.t.Helper()
	log, err := os.OpenFile(e.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		e.t.Fatal(err)
	}
	defer log.Close()
	cmd := e.s.Host.Command(sandbox.Binary(e.t), "docker-plugin", "--docker-host", e.d.Host())
	cmd.Env = e.s.Env()
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	e.plugin = cmd
	e.starts++
	want := fmt.Sprintf("serving %s", dockerdriver.DefaultSocket)
	waitFor(e.t, func() bool {
		b, _ := os.ReadFile(e.log)
		return strings.Count(string(b), want) >= e.starts
	}, "the plugin to serve its socket")
}

func (e *dockerEnv) stopPlugin(sig syscall.Signal) {
	if e.plugin == nil {
		return
	}
	e.plugin.Process.Signal(sig)
	e.plugin.Wait()
	e.plugin = nil
}

func (e *dockerEnv) pluginLog() string {
	b, _ := os.ReadFile(e.log)
	return string(b)
}

func (e *dockerEnv) docker(args ...string) string {
	e.t.Helper()
	o, stderr, err := e.d.Docker(args...)
	if err != nil {
		e.t.Fatalf("docker %s: %v\nstdout: %s\nstderr: %s\nplugin log:\n%s", strings.Join(args, " "), err, o, stderr, e.pluginLog())
	}
	return strings.TrimSpace(o)
}

// fails runs a docker command that must fail and returns its error line.
func (e *dockerEnv) fails(args ...string) string {
	e.t.Helper()
	o, stderr, err := e.d.Docker(args...)
	if err == nil {
		e.t.Fatalf("docker %s succeeded:\n%s", strings.Join(args, " "), o)
	}
	return strings.TrimSpace(stderr)
}

// ping pings addr from a container, a few times at most (the first packet
// may wait for ARP).
func (e *dockerEnv) ping(ctr, addr string) error {
	var err error
	for i := 0; i < 5; i++ {
		if _, _, err = e.d.Docker("exec", ctr, "ping", "-c1", "-W2", addr); err == nil {
			return nil
		}
	}
	return fmt.Errorf("%s cannot ping %s: %v", ctr, addr, err)
}

type dockerNetJSON struct {
	Name, Id, Driver string
	Options          map[string]string
	IPAM             struct {
		Driver string
		Config []struct{ Subnet, Gateway string }
	}
	Containers map[string]struct{ Name, EndpointID, MacAddress, IPv4Address, IPv6Address string }
}

func (e *dockerEnv) inspectNet(name string) dockerNetJSON {
	e.t.Helper()
	var out []dockerNetJSON
	if err := json.Unmarshal([]byte(e.docker("network", "inspect", name)), &out); err != nil || len(out) != 1 {
		e.t.Fatalf("docker network inspect %s: %v", name, err)
	}
	return out[0]
}

type ctnetNetJSON struct {
	Name, Id, Driver string
	Options          map[string]string
	IPAM             struct {
		Config []struct{ Subnet, Gateway string }
	}
	Containers map[string]struct{ Name, EndpointID, MacAddress, IPv4Address, IPv6Address string }
}

func (e *dockerEnv) ctnetInspect(name string) ctnetNetJSON {
	e.t.Helper()
	var out []ctnetNetJSON
	if err := json.Unmarshal([]byte(e.s.MustCtnet("network", "inspect", name)), &out); err != nil || len(out) != 1 {
		e.t.Fatalf("ctnet network inspect %s: %v", name, err)
	}
	return out[0]
}

// sameEndpoints checks that ctnet's view of a network is Docker's.
func (e *dockerEnv) sameEndpoints(name string) {
	e.t.Helper()
	dj, cj := e.inspectNet(name), e.ctnetInspect(name)
	if dj.Id != cj.Id {
		e.t.Errorf("network %s: docker id %s, ctnet id %s", name, dj.Id, cj.Id)
	}
	got := map[string]string{}
	for _, ep := range cj.Containers {
		got[ep.EndpointID] = ep.IPv4Address + " " + ep.MacAddress + " " + ep.IPv6Address
	}
	want := map[string]string{}
	for _, ep := range dj.Containers {
		want[ep.EndpointID] = ep.IPv4Address + " " + ep.MacAddress + " " + ep.IPv6Address
	}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		e.t.Errorf("network %s: ctnet's endpoints %v, docker's %v", name, got, want)
	}
}

// waitRenamed waits until ctnet calls the network by Docker's name.
func (e *dockerEnv) waitRenamed(name string) {
	e.t.Helper()
	waitFor(e.t, func() bool {
		// By name, not by an id that happens to start with it ("db…").
		out, _, err := e.s.Ctnet("network", "inspect", "-f", "{{.Name}}", name)
		return err == nil && strings.TrimSpace(out) == name
	}, "ctnet to learn the name "+name)
}

func TestDockerNetwork(t *testing.T) {
	t.Parallel()
	e := newDockerEnv(t)
	s := e.s
	id := e.docker("network", "create", "-d", "ctnet", "--subnet", "10.80.0.0/24", "-o", "com.docker.network.bridge.enable_icc=true", "web")
	e.waitRenamed("web")
	if ls := s.MustCtnet("network", "ls"); !strings.Contains(ls, id[:12]+"   web") && !strings.Contains(ls, id[:12]) {
		t.Errorf("ctnet network ls lacks %s:\n%s", id[:12], ls)
	}
	cj := e.ctnetInspect("web")
	if cj.Options["com.docker.network.bridge.enable_icc"] != "true" || cj.Options["com.docker.network.bridge.name"] != "br-"+id[:12] {
		t.Errorf("ctnet's options: %v", cj.Options)
	}
	if dj := e.inspectNet("web"); dj.Options["com.docker.network.bridge.enable_icc"] != "true" || dj.Driver != "ctnet" {
		t.Errorf("docker's network: %+v", dj)
	}

	e.docker("run", "-d", "--name", "c1", "--network", "web", image, "sleep", "600")
	e.docker("run", "-d", "--name", "c2", "--network", "web", image, "sleep", "600")
	e.sameEndpoints("web")
	ep := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.web.EndpointID}}", "c1")
	ip1 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.web.IPAddress}}", "c1")
	ip2 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.web.IPAddress}}", "c2")
	if !strings.HasPrefix(ip1, "10.80.0.") || ip1 == ip2 {
		t.Fatalf("addresses %s and %s", ip1, ip2)
	}
	// ctnet's bridge and veth names, its MTU (the uplink's), inside and out.
	brctl := s.Host.MustRun("brctl", "show", "br-"+id[:12])
	if !strings.Contains(brctl, "veth"+ep[:7]) {
		t.Errorf("brctl show: no veth%s:\n%s", ep[:7], brctl)
	}
	if mtu := e.docker("exec", "c1", "cat", "/sys/class/net/eth0/mtu"); mtu != fmt.Sprint(sandbox.UplinkMTU) {
		t.Errorf("eth0 MTU %s, want the uplink's %d", mtu, sandbox.UplinkMTU)
	}
	if mac := e.docker("exec", "c1", "cat", "/sys/class/net/eth0/address"); mac != "02:42:0a:50:00:02" && !strings.HasPrefix(mac, "02:42:0a:50:00:") {
		t.Errorf("eth0 MAC %s: not derived from its address", mac)
	}

	// Packets: each other by address and by name (Docker's embedded DNS),
	// the outside, masqueraded to the host's address.
	for _, to := range []string{ip2, "c2", sandbox.UpstreamAddr} {
		if err := e.ping("c1", to); err != nil {
			t.Error(err)
		}
	}
	pid := e.docker("inspect", "-f", "{{.State.Pid}}", "c1")
	srv := s.Upstream.Command("socat", "-T5", "TCP-LISTEN:7777,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	var seen string
	for i := 0; i < 50 && seen == ""; i++ {
		o, _ := s.Host.Run("nsenter", "-t", pid, "-n", "--", "socat", "-T2", "-", "TCP:"+sandbox.UpstreamAddr+":7777,connect-timeout=1")
		seen = strings.TrimSpace(o)
	}
	srv.Process.Kill()
	srv.Wait()
	if seen != sandbox.HostAddr {
		t.Errorf("the upstream saw %q, want the host's address %s (masquerade)", seen, sandbox.HostAddr)
	}

	// ctnet's reconcile leaves Docker's live endpoints alone (ctnet knows
	// no namespace of theirs), and says so when one's veth is gone.
	if out := s.MustCtnet("system", "reconcile"); out != "" {
		t.Errorf("reconcile with Docker's containers running:\n%s", out)
	}
	if err := e.ping("c1", ip2); err != nil {
		t.Error(err)
	}
	ep2 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.web.EndpointID}}", "c2")
	s.Host.MustRun("ip", "link", "del", "veth"+ep2[:7])
	if out := s.MustCtnet("system", "reconcile"); !strings.Contains(out, "veth"+ep2[:7]) || !strings.Contains(out, "restart the container") {
		t.Errorf("reconcile after c2's veth was deleted:\n%s", out)
	}
	e.docker("restart", "c2")
	ip2 = e.docker("inspect", "-f", "{{.NetworkSettings.Networks.web.IPAddress}}", "c2")
	if err := e.ping("c1", ip2); err != nil {
		t.Errorf("after restarting c2: %v", err)
	}
	e.sameEndpoints("web")

	// connect/disconnect on a running container: eth1 from ctnet, gone after.
	e.docker("network", "create", "-d", "ctnet", "--subnet", "10.81.0.0/24", "db")
	e.waitRenamed("db")
	e.docker("run", "-d", "--name", "c3", "--network", "db", image, "sleep", "600")
	e.docker("network", "connect", "db", "c1")
	e.sameEndpoints("db")
	ip3 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.db.IPAddress}}", "c3")
	if out := e.docker("exec", "c1", "ip", "-4", "addr", "show", "eth1"); !strings.Contains(out, "10.81.0.") {
		t.Errorf("c1 eth1 after connect: %s", out)
	}
	if err := e.ping("c1", ip3); err != nil {
		t.Error(err)
	}
	if err := e.ping("c3", ip2); err == nil {
		t.Errorf("c3 on db reaches c2 on web: networks are not isolated")
	}
	e.docker("network", "disconnect", "db", "c1")
	if out, _, _ := e.d.Docker("exec", "c1", "ip", "link", "show", "eth1"); strings.Contains(out, "eth1") {
		t.Errorf("eth1 still in c1 after disconnect: %s", out)
	}
	e.sameEndpoints("db")
	if err := e.ping("c1", ip2); err != nil {
		t.Error(err)
	}

	// Removing containers and networks leaves nothing of them in ctnet.
	e.docker("rm", "-f", "c1", "c2", "c3")
	e.docker("network", "rm", "web", "db")
	if ls := s.MustCtnet("network", "ls", "--format", "{{.Name}}"); ls != "bridge\nhost\nnone\n" {
		t.Errorf("ctnet network ls after docker network rm:\n%s", ls)
	}
	if links := s.Host.MustRun("ip", "-o", "link"); strings.Contains(links, "br-"+id[:12]) || strings.Contains(links, "veth"+ep[:7]) || strings.Contains(links, "ctnp") {
		t.Errorf("links left:\n%s", links)
	}
	if out := s.MustCtnet("system", "reconcile"); out != "" {
		t.Errorf("reconcile found something to repair:\n%s", out)
	}
}

// httpGet asks addr:port for / from ns and returns what came back.
func httpGet(ns *sandbox.NS, addr, port string) string {
	cmd := ns.Command("socat", "-T3", "-", "TCP:"+addr+":"+port+",connect-timeout=2")
	cmd.Stdin = strings.NewReader("GET / HTTP/1.0\r\n\r\n")
	out, _ := cmd.CombinedOutput()
	return string(out)
}

// webServer runs a container answering HTTP with word.
func (e *dockerEnv) webServer(name, word string, args ...string) {
	e.t.Helper()
	run := append([]string{"run", "-d", "--name", name}, args...)
	run = append(run, image, "sh", "-c", "mkdir -p /www && echo "+word+" > /www/index.html && exec httpd -f -p 80 -h /www")
	e.docker(run...)
	waitFor(e.t, func() bool {
		o, _, _ := e.d.Docker("exec", name, "wget", "-q", "-O-", "http://127.0.0.1/")
		return strings.Contains(o, word)
	}, name+" to serve")
}

// nftRules counts the rules of ctnet's table.
func nftRules(t *testing.T, s *sandbox.Sandbox) int {
	t.Helper()
	return strings.Count(s.Host.MustRun("nft", "-j", "list", "table", "inet", "ctnet"), `"rule"`)
}

// sandboxProcs counts processes named comm in the sandbox's network namespace.
func sandboxProcs(s *sandbox.Sandbox, comm string) int {
	self, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", s.Host.PID))
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, ent := range ents {
		c, err := os.ReadFile("/proc/" + ent.Name() + "/comm")
		if err != nil || strings.TrimSpace(string(c)) != comm {
			continue
		}
		if l, _ := os.Readlink("/proc/" + ent.Name() + "/ns/net"); l == self {
			n++
		}
	}
	return n
}

func TestDockerPublishedPorts(t *testing.T) {
	t.Parallel()
	e := newDockerEnv(t)
	s := e.s
	e.docker("network", "create", "-d", "ctnet", "--subnet", "10.82.0.0/24", "pub")
	before := nftRules(t, s)
	e.webServer("web", "hello", "--network", "pub", "-p", "8080:80", "-p", "127.0.0.1:8081:80", "-p", "8085-8086:80")
	// Docker's own bridge and its iptables rules, side by side.
	e.webServer("dweb", "docker", "-p", "9090:80")

	h := sandbox.HostAddr
	for _, r := range []struct {
		from       *sandbox.NS
		addr, port string
		want       string
	}{
		{s.Upstream, h, "8080", "hello"},
		{s.Host, h, "8080", "hello"},
		{s.Host, "127.0.0.1", "8080", "hello"},
		{s.Host, "127.0.0.1", "8081", "hello"},
		{s.Upstream, h, "8085", "hello"}, // the first of the range
		{s.Upstream, h, "9090", "docker"},
	} {
		if got := httpGet(r.from, r.addr, r.port); !strings.Contains(got, r.want) {
			t.Errorf("%s:%s from ns %d: got %q, want %s", r.addr, r.port, r.from.PID, got, r.want)
		}
	}
	if got := httpGet(s.Upstream, h, "8081"); strings.Contains(got, "hello") {
		t.Errorf("a port on 127.0.0.1 answers other hosts: %q", got)
	}
	if n := nftRules(t, s); n != before {
		t.Errorf("publishing added rules to ctnet's table: %d before, %d after", before, n)
	}
	if table := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); !strings.Contains(table, "8080") || !strings.Contains(table, "8081") {
		t.Errorf("ctnet's maps lack the ports:\n%s", table)
	}
	if n := sandboxProcs(s, "docker-proxy"); n != 0 {
		t.Errorf("%d docker-proxy processes run", n)
	}
	// A conflict with another container's port is refused in one line and
	// leaves no endpoint.
	msg := e.fails("run", "-d", "--name", "web2", "--network", "pub", "-p", "8080:80", image, "sleep", "600")
	if !strings.Contains(msg, "ctnet: ") || !strings.Contains(msg, "8080") {
		t.Errorf("conflict: %s", msg)
	}
	e.sameEndpoints("pub")

	e.docker("rm", "-f", "web")
	if got := httpGet(s.Upstream, h, "8080"); strings.Contains(got, "hello") {
		t.Errorf("port 8080 still answers after rm: %q", got)
	}
	if table := s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); strings.Contains(table, "8080") {
		t.Errorf("ctnet's maps keep port 8080 after rm:\n%s", table)
	}
	if got := httpGet(s.Upstream, h, "9090"); !strings.Contains(got, "docker") {
		t.Errorf("Docker's own published port stopped answering: %q", got)
	}
}

func TestDockerIPAM(t *testing.T) {
	t.Parallel()
	e := newDockerEnv(t)
	e.docker("network", "create", "-d", "ctnet", "--ipam-driver", "ctnet", "auto")
	e.waitRenamed("auto")
	dj, cj := e.inspectNet("auto"), e.ctnetInspect("auto")
	if dj.IPAM.Driver != "ctnet" || len(dj.IPAM.Config) != 1 || len(cj.IPAM.Config) != 1 || dj.IPAM.Config[0].Subnet != cj.IPAM.Config[0].Subnet {
		t.Fatalf("docker's IPAM %+v, ctnet's %+v", dj.IPAM, cj.IPAM)
	}
	e.docker("run", "-d", "--name", "a1", "--network", "auto", image, "sleep", "600")
	e.docker("run", "-d", "--name", "a2", "--network", "auto", image, "sleep", "600")
	e.sameEndpoints("auto")
	ip2 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.auto.IPAddress}}", "a2")
	if err := e.ping("a1", ip2); err != nil {
		t.Error(err)
	}

	e.docker("network", "create", "-d", "ctnet", "--ipam-driver", "ctnet", "--subnet", "10.90.0.0/24",
		"--ip-range", "10.90.0.128/25", "--gateway", "10.90.0.254", "ranged")
	e.waitRenamed("ranged")
	e.docker("run", "-d", "--name", "r1", "--network", "ranged", image, "sleep", "600")
	e.docker("run", "-d", "--name", "r2", "--network", "ranged", "--ip", "10.90.0.20", image, "sleep", "600")
	ip := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.ranged.IPAddress}}", "r1")
	if ip != "10.90.0.128" && !strings.HasPrefix(ip, "10.90.0.1") && !strings.HasPrefix(ip, "10.90.0.2") {
		t.Errorf("r1 got %s, outside --ip-range 10.90.0.128/25", ip)
	}
	if gw := e.docker("exec", "r1", "ip", "route", "show", "default"); !strings.Contains(gw, "10.90.0.254") {
		t.Errorf("r1's default route: %s", gw)
	}
	if err := e.ping("r1", "10.90.0.20"); err != nil {
		t.Error(err)
	}
	if err := e.ping("r1", sandbox.UpstreamAddr); err != nil {
		t.Error(err)
	}
	msg := e.fails("run", "-d", "--name", "r3", "--network", "ranged", "--ip", "10.90.0.20", image, "sleep", "600")
	if !strings.Contains(msg, "ctnet: ") || !strings.Contains(msg, "10.90.0.20") {
		t.Errorf("a taken --ip: %s", msg)
	}
	msg = e.fails("network", "create", "-d", "ctnet", "--ipam-driver", "ctnet", "--subnet", "10.90.0.0/16", "over")
	if !strings.Contains(msg, "overlaps") {
		t.Errorf("an overlapping pool: %s", msg)
	}
	e.sameEndpoints("ranged")

	// Removing the network gives the pool back.
	e.docker("rm", "-f", "r1", "r2", "r3")
	e.docker("network", "rm", "ranged")
	e.docker("network", "create", "-d", "ctnet", "--ipam-driver", "ctnet", "--subnet", "10.90.0.0/16", "again")
	// Docker's own bridge driver takes ctnet's pools too.
	e.docker("network", "create", "--ipam-driver", "ctnet", "--subnet", "10.91.0.0/24", "dbr")
	e.docker("run", "-d", "--name", "b1", "--network", "dbr", image, "sleep", "600")
	e.docker("run", "-d", "--name", "b2", "--network", "dbr", image, "sleep", "600")
	b1 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.dbr.IPAddress}}", "b1")
	b2 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.dbr.IPAddress}}", "b2")
	if b1 == b2 || !strings.HasPrefix(b1, "10.91.0.") {
		t.Errorf("bridge driver with ctnet's IPAM: %s and %s", b1, b2)
	}
}

func TestDockerBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	e := newDockerEnv(t)
	s := e.s
	e.docker("network", "create", "-d", "ctnet", "--subnet", "10.83.0.0/24", "ok")
	e.waitRenamed("ok")
	s.MustCtnet("network", "create", "--subnet", "10.84.0.0/24", "mine") // unknown to Docker's IPAM
	before := s.MustCtnet("network", "ls") + e.docker("network", "ls", "-q") + s.Host.MustRun("ip", "-o", "link")
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "-d", "ctnet", "-o", "bogus=1", "x1"}, `unknown option "bogus"`},
		{[]string{"network", "create", "-d", "ctnet", "-o", "ctnet.driver=nope", "x2"}, `unknown driver "nope"`},
		{[]string{"network", "create", "-d", "ctnet", "-o", "com.docker.network.driver.mtu=9", "x3"}, "com.docker.network.driver.mtu"},
		{[]string{"network", "create", "-d", "ctnet", "-o", "com.docker.network.bridge.name=" + strings.Repeat("b", 16), "x4"}, "bridge name"},
		{[]string{"network", "create", "-d", "ctnet", "--subnet", "10.84.0.0/25", "x5"}, `overlaps network "mine"`},
		{[]string{"network", "create", "-d", "ctnet", "--subnet", "203.0.113.0/25", "x6"}, "overlaps"},
		{[]string{"network", "create", "-d", "ctnet", "--ipam-driver", "ctnet", "--ipam-opt", "a=b", "x7"}, "unknown IPAM option"},
		{[]string{"network", "create", "-d", "ctnet", "--ipv6", "--ipam-driver", "ctnet", "x8"}, "--subnet"},
		{[]string{"run", "--rm", "--network", "ok", "-p", "[::1]:99:80/sctp", image, "true"}, "only tcp and udp"},
	} {
		msg := e.fails(c.args...)
		if !strings.Contains(msg, "ctnet: ") || !strings.Contains(msg, c.want) {
			t.Errorf("docker %s:\n%s\nwant one line with ctnet: … %s", strings.Join(c.args, " "), msg, c.want)
			continue
		}
		// docker's own client adds a log line of its own when `run --rm`
		// fails while it waits (a race inside the CLI, not ctnet's output).
		msg = dockerWaitRE.ReplaceAllString(msg, "")
		if line := msg[strings.Index(msg, "ctnet: "):]; strings.Contains(line, "\n") && !strings.HasPrefix(strings.SplitN(line, "\n", 2)[1], "See '") {
			t.Errorf("docker %s: more than one line: %q", strings.Join(c.args, " "), line)
		}
	}
	after := s.MustCtnet("network", "ls") + e.docker("network", "ls", "-q") + s.Host.MustRun("ip", "-o", "link")
	if d := diffLines(before, after); d != "" {
		t.Errorf("failed commands changed things:\n%s", d)
	}
}

// leftovers says what of ctnet's is in the kernel but in no endpoint: veths
// and inner ends on the host, and what reconcile would repair.
func (e *dockerEnv) leftovers() string {
	e.t.Helper()
	var out []string
	if r := e.s.MustCtnet("system", "reconcile"); r != "" {
		out = append(out, "reconcile: "+r)
	}
	if links := e.s.Host.MustRun("ip", "-o", "link"); strings.Contains(links, "ctnp") {
		out = append(out, "inner ends left on the host:\n"+links)
	}
	return strings.Join(out, "\n")
}

func TestDockerPluginKilled(t *testing.T) {
	t.Parallel()
	e := newDockerEnv(t)
	e.docker("network", "create", "-d", "ctnet", "--subnet", "10.85.0.0/24", "-o", "ctnet.driver=bridge", "k")
	e.waitRenamed("k")
	e.docker("run", "-d", "--name", "k1", "--network", "k", "-p", "8088:80", image, "sleep", "600")
	e.stopPlugin(syscall.SIGKILL)
	// Without the plugin, the container keeps its network.
	if err := e.ping("k1", sandbox.UpstreamAddr); err != nil {
		t.Error(err)
	}
	e.startPlugin()
	e.docker("run", "-d", "--name", "k2", "--network", "k", image, "sleep", "600")
	ip2 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.k.IPAddress}}", "k2")
	if err := e.ping("k1", ip2); err != nil {
		t.Error(err)
	}
	e.sameEndpoints("k")
	e.docker("rm", "-f", "k1")
	e.sameEndpoints("k")
	if table := e.s.Host.MustRun("nft", "list", "table", "inet", "ctnet"); strings.Contains(table, "8088") {
		t.Errorf("k1's port outlived it:\n%s", table)
	}
	// Killed again, and dockerd's next calls succeed once it is back.
	e.stopPlugin(syscall.SIGKILL)
	e.startPlugin()
	e.docker("network", "connect", "bridge", "k2")
	e.docker("network", "disconnect", "k", "k2")
	e.docker("network", "connect", "k", "k2")
	e.sameEndpoints("k")
	e.docker("rm", "-f", "k2")
	e.docker("network", "rm", "k")
	if l := e.leftovers(); l != "" {
		t.Error(l)
	}
}

func TestDockerdRestart(t *testing.T) {
	t.Parallel()
	for _, live := range []bool{true, false} {
		t.Run(fmt.Sprintf("live-restore=%v", live), func(t *testing.T) {
			t.Parallel()
			var flags []string
			if live {
				flags = append(flags, "--live-restore")
			}
			e := newDockerEnv(t, flags...)
			e.docker("network", "create", "-d", "ctnet", "--subnet", "10.87.0.0/24", "r")
			e.waitRenamed("r")
			e.docker("run", "-d", "--name", "r1", "--restart", "always", "--network", "r", image, "sleep", "600")
			e.docker("run", "-d", "--name", "r2", "--restart", "always", "--network", "r", image, "sleep", "600")
			ep := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.r.EndpointID}}", "r1")
			for _, how := range []string{"stop", "kill"} {
				if how == "stop" {
					e.d.Stop()
				} else {
					e.d.Kill()
				}
				e.d.Start()
				for i := 0; ; i++ {
					o, _, _ := e.d.Docker("inspect", "-f", "{{.State.Running}}", "r1", "r2")
					if o == "true\ntrue\n" {
						break
					}
					if i == 300 {
						ps, _, _ := e.d.Docker("ps", "-a")
						t.Fatalf("after dockerd %s, r1 and r2 do not run again:\n%s\nplugin log:\n%s\ndockerd log:\n%s", how, ps, e.pluginLog(), tailFile(e.d.Log, 3000))
					}
					time.Sleep(200 * time.Millisecond)
				}
				now := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.r.EndpointID}}", "r1")
				if live && now != ep {
					t.Errorf("after dockerd %s with live containers: endpoint %s, was %s", how, now, ep)
				}
				ep = now
				e.sameEndpoints("r")
				ip2 := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.r.IPAddress}}", "r2")
				for _, to := range []string{ip2, sandbox.UpstreamAddr} {
					if err := e.ping("r1", to); err != nil {
						t.Errorf("after dockerd %s: %v", how, err)
					}
				}
				e.docker("run", "--rm", "--network", "r", image, "ping", "-c1", "-W2", ip2)
			}
			e.docker("rm", "-f", "r1", "r2")
			e.docker("network", "rm", "r")
			if l := e.leftovers(); l != "" {
				t.Error(l)
			}
		})
	}
}

func TestDockerConcurrentRuns(t *testing.T) {
	t.Parallel()
	e := newDockerEnv(t)
	e.docker("network", "create", "-d", "ctnet", "--subnet", "10.86.0.0/24", "many")
	const n = 30
	errs := make([]string, n)
	atOnce(n, func(i int) {
		if o, stderr, err := e.d.Docker("run", "-d", "--name", fmt.Sprintf("m%d", i), "--network", "many", image, "sleep", "600"); err != nil {
			errs[i] = fmt.Sprintf("m%d: %v: %s %s", i, err, o, stderr)
		}
	})
	for _, msg := range errs {
		if msg != "" {
			t.Error(msg)
		}
	}
	if t.Failed() {
		t.Fatalf("plugin log:\n%s", e.pluginLog())
	}
	seen := map[string]string{}
	for i := 0; i < n; i++ {
		name := fmt.Sprintf("m%d", i)
		ip := e.docker("inspect", "-f", "{{.NetworkSettings.Networks.many.IPAddress}}", name)
		if other, dup := seen[ip]; dup || ip == "" {
			t.Errorf("%s and %s both have %q", name, other, ip)
		}
		seen[ip] = name
	}
	e.sameEndpoints("many")
	for ip, name := range seen {
		if err := e.ping("m0", ip); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
	var names []string
	for i := 0; i < n; i++ {
		names = append(names, fmt.Sprintf("m%d", i))
	}
	e.docker(append([]string{"rm", "-f"}, names...)...)
	e.docker("network", "rm", "many")
	if l := e.leftovers(); l != "" {
		t.Error(l)
	}
}

func tailFile(path string, n int) string {
	b, _ := os.ReadFile(path)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// dockerWaitRE is the docker client's own log line when `run --rm` fails
// while it waits for the container.
var dockerWaitRE = regexp.MustCompile(`\n?time="[^"]*" level=error msg="error waiting for container: [^"]*"`)
