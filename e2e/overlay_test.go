package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
	"github.com/ctnet/ctnet/internal/store/etcd/etcdtest"
)

// An overlay cluster for tests: a 3-member etcd (etcdtest) whose sandbox also
// holds the underlay, a bridge ul0 at 198.51.100.254/24; n hosts, each a
// sandbox of its own (with its own upstream "internet" at 203.0.113.1) whose
// eth1 is a port uhN of ul0 at 198.51.100.1N, MTU 1500, and which reaches
// the etcd members (10.99.0.1-3) through 198.51.100.254.
//
//	etcd sandbox: m1 m2 m3 on lo 10.99.0.1-3, bridge ul0 198.51.100.254
//	  uh1 │          uh2 │          uh3 │
//	host 1 eth1 .11  host 2 eth1 .12  host 3 eth1 .13   (each: eth0 → its own upstream)
type ovCluster struct {
	t     testing.TB
	etcd  *etcdtest.Cluster
	ul    *sandbox.NS
	hosts []*ovHost
}

type ovHost struct {
	c    *ovCluster
	s    *sandbox.Sandbox
	name string // h1, h2, …
	addr string // 198.51.100.11, …
	port string // its port on ul0
	env  []string
}

const ovEndpoints = "10.99.0.1:2379,10.99.0.2:2379,10.99.0.3:2379"

// newOvCluster starts etcd and n hosts; env is added to every host's ctnet
// environment (CTNET_HOST_TTL=…, CTNET_STORE_TIMEOUT=…).
func newOvCluster(t testing.TB, n int, env ...string) *ovCluster {
	t.Helper()
	sandbox.RequireRoot(t)
	c := &ovCluster{t: t, etcd: etcdtest.Start(t, etcdtest.Options{Members: 3})}
	c.ul = c.etcd.Sandbox.Host
	for _, cmd := range [][]string{
		{"ip", "link", "add", "ul0", "type", "bridge"},
		{"ip", "addr", "add", "198.51.100.254/24", "dev", "ul0"},
		{"ip", "link", "set", "ul0", "up"},
	} {
		c.ul.MustRun(cmd[0], cmd[1:]...)
	}
	for i := range n {
		h := &ovHost{c: c, s: sandbox.New(t), name: fmt.Sprintf("h%d", i+1),
			addr: fmt.Sprintf("198.51.100.%d", 11+i), port: fmt.Sprintf("uh%d", i+1)}
		h.env = append(h.s.Env(), "CTNET_STORE=etcd://"+ovEndpoints, "CTNET_HOST_NAME="+h.name, "CTNET_HOST_TTL=10s")
		h.env = append(h.env, env...)
		c.ul.MustRun("ip", "link", "add", h.port, "type", "veth", "peer", "name", "eth1", "netns", strconv.Itoa(h.s.Host.PID))
		c.ul.MustRun("ip", "link", "set", h.port, "master", "ul0", "up")
		for _, cmd := range [][]string{
			{"ip", "addr", "add", h.addr + "/24", "dev", "eth1"},
			{"ip", "link", "set", "eth1", "up"},
			{"ip", "route", "add", "10.99.0.0/24", "via", "198.51.100.254"},
		} {
			h.s.Host.MustRun(cmd[0], cmd[1:]...)
		}
		// Runs before the sandbox's own cleanup (and while etcd lives):
		// the sandbox's cleanup knows nothing of the store.
		t.Cleanup(func() {
			if out, _, err := h.ctnet("ps", "-aq"); err == nil && strings.TrimSpace(out) != "" {
				h.ctnet(append([]string{"rm", "-f"}, strings.Fields(out)...)...)
			}
			if t.Failed() {
				if b, err := os.ReadFile(filepath.Join(h.s.RunRoot, "overlay.log")); err == nil {
					t.Logf("overlay agent log of %s:\n%s", h.name, b)
				} else if out, err := h.s.Host.Run("cat", filepath.Join(h.s.RunRoot, "overlay.log")); err == nil {
					t.Logf("overlay agent log of %s:\n%s", h.name, out)
				}
			}
		})
		c.hosts = append(c.hosts, h)
	}
	return c
}

// ctnet runs ctnet on the host with the cluster's environment.
func (h *ovHost) ctnet(args ...string) (string, string, error) {
	cmd := h.s.Host.Command(sandbox.Binary(h.c.t), args...)
	cmd.Env = h.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

func (h *ovHost) must(args ...string) string {
	h.c.t.Helper()
	o, e, err := h.ctnet(args...)
	if err != nil {
		h.c.t.Fatalf("%s: ctnet %s: %v\nstdout: %s\nstderr: %s", h.name, strings.Join(args, " "), err, o, e)
	}
	return o
}

// run starts a container on the network and returns its address.
func (h *ovHost) run(net, name string, flags ...string) string {
	h.c.t.Helper()
	args := append([]string{"run", "-d", "--name", name, "--network", net}, flags...)
	h.must(append(args, "host", "sleep", "3600")...)
	return h.ip(name)
}

func (h *ovHost) ip(name string) string {
	h.c.t.Helper()
	return strings.TrimSpace(h.must("inspect", "-f", "{{.NetworkSettings.IPAddress}}", name))
}

// ping pings from a container, a few times: the first packet of a path
// may meet an entry not programmed yet.
func (h *ovHost) ping(name, addr string, extra ...string) error {
	var err error
	for range 20 {
		var o, e string
		args := append([]string{"exec", name, "ping", "-c1", "-W1"}, extra...)
		if o, e, err = h.ctnet(append(args, addr)...); err == nil {
			return nil
		}
		err = fmt.Errorf("%s: ping %s from %s: %v\n%s%s", h.name, addr, name, err, o, e)
		time.Sleep(100 * time.Millisecond)
	}
	return err
}

// pingFails checks that no packet gets through, three times.
func (h *ovHost) pingFails(name, addr string) error {
	for range 3 {
		if _, _, err := h.ctnet("exec", name, "ping", "-c1", "-W1", addr); err == nil {
			return fmt.Errorf("%s: ping %s from %s got through", h.name, addr, name)
		}
	}
	return nil
}

// processes lists the command lines of the processes of the host's mount
// namespace whose first argument is name.
func (h *ovHost) processes(name string) []int {
	mnt, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", h.s.Host.PID))
	if err != nil {
		return nil
	}
	var out []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if l, _ := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", pid)); l != mnt {
			continue
		}
		cmdline, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if arg0, _, _ := bytes.Cut(cmdline, []byte{0}); string(arg0) == name {
			out = append(out, pid)
		}
	}
	return out
}

// overlayLinks lists the host's links made by the overlay (bridges ov-…,
// vxlan vx-…).
func (h *ovHost) overlayLinks() []string {
	var out []string
	for _, l := range hostLinks(h.c.t.(*testing.T), h.s.Host) {
		if strings.HasPrefix(l.Name, "ov-") || strings.HasPrefix(l.Name, "vx-") {
			out = append(out, l.Name)
		}
	}
	return out
}

type ovNetworkJSON struct {
	Name, Scope, Driver string
	Containers          map[string]struct{ Name, IPv4Address, MacAddress, Host string }
	Options             map[string]string
	Peers               []struct{ Name, IP string }
}

func (h *ovHost) inspect(net string) ovNetworkJSON {
	h.c.t.Helper()
	var nets []ovNetworkJSON
	out := h.must("network", "inspect", net)
	if err := json.Unmarshal([]byte(out), &nets); err != nil || len(nets) != 1 {
		h.c.t.Fatalf("network inspect %s: %v\n%s", net, err, out)
	}
	return nets[0]
}

func TestOverlayAcrossHosts(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3)
	h1, h2, h3 := c.hosts[0], c.hosts[1], c.hosts[2]

	// Created on one host, seen on every host.
	h2.must("network", "create", "-d", "overlay", "--subnet", "10.200.0.0/16", "ov")
	for _, h := range c.hosts {
		if out := h.must("network", "ls", "--filter", "scope=global", "--format", "{{.Name}} {{.Driver}} {{.Scope}}"); out != "ov overlay global\n" {
			t.Errorf("%s: network ls: %q", h.name, out)
		}
	}
	if o, e, err := h1.ctnet("network", "create", "-d", "overlay", "--subnet", "10.201.0.0/16", "ov"); err == nil || !strings.Contains(e, `network with name ov already exists`) {
		t.Errorf("the same name from another host: %v %s%s", err, o, e)
	}

	var ips []string
	for i, h := range c.hosts {
		ips = append(ips, h.run("ov", fmt.Sprintf("c%d", i+1)))
	}
	if !slices.Equal(ips, []string{"10.200.0.2", "10.200.0.3", "10.200.0.4"}) {
		t.Errorf("addresses: %v", ips)
	}
	// Every container reaches every other, both ways, and each its own host's gateway.
	for i, h := range c.hosts {
		for j, ip := range ips {
			if i != j {
				if err := h.ping(fmt.Sprintf("c%d", i+1), ip); err != nil {
					t.Error(err)
				}
			}
		}
	}

	// Inspect from any host shows every host's containers, with their host.
	n := h3.inspect("ov")
	var hosts []string
	for _, ep := range n.Containers {
		hosts = append(hosts, ep.Name+"@"+ep.Host)
	}
	slices.Sort(hosts)
	if want := []string{"c1@h1 (198.51.100.11)", "c2@h2 (198.51.100.12)", "c3@h3 (198.51.100.13)"}; !slices.Equal(hosts, want) || n.Scope != "global" || len(n.Peers) != 3 {
		t.Errorf("inspect from h3: containers %v, scope %s, peers %v", hosts, n.Scope, n.Peers)
	}
	if n.Options["com.docker.network.driver.overlay.vxlanid_list"] != "4097" || n.Options["com.docker.network.driver.mtu"] != "1450" {
		t.Errorf("options: %v", n.Options)
	}

	// The VXLAN device, as the issue says.
	var vx []struct {
		Ifname, Master string
		MTU            int
		Linkinfo       struct {
			Kind string `json:"info_kind"`
			Data struct {
				ID       int    `json:"id"`
				Local    string `json:"local"`
				Link     string `json:"link"`
				Port     int    `json:"port"`
				Learning bool   `json:"learning"`
				Proxy    bool   `json:"proxy"`
			} `json:"info_data"`
		}
	}
	if err := json.Unmarshal([]byte(h1.s.Host.MustRun("ip", "-d", "-j", "link", "show", "type", "vxlan")), &vx); err != nil || len(vx) != 1 {
		t.Fatalf("vxlan devices on h1: %v %+v", err, vx)
	}
	if d := vx[0].Linkinfo.Data; d.ID != 4097 || d.Port != 4789 || d.Learning || !d.Proxy || d.Local != h1.addr || d.Link != "eth1" || vx[0].MTU != 1450 || !strings.HasPrefix(vx[0].Master, "ov-") {
		t.Errorf("vxlan device on h1: %+v\n%s", vx[0], h1.s.Host.MustRun("ip", "-d", "link", "show", "type", "vxlan"))
	}
	// MTU 1500 - 50 end to end: 1422 bytes of ICMP payload fit, 1423 do not.
	if out := h1.must("exec", "c1", "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1450") {
		t.Errorf("eth0 of c1: %s", out)
	}
	if err := h1.ping("c1", ips[2], "-M", "do", "-s", "1422"); err != nil {
		t.Error(err)
	}
	if _, _, err := h1.ctnet("exec", "c1", "ping", "-c1", "-W1", "-M", "do", "-s", "1423", ips[2]); err == nil {
		t.Errorf("a packet larger than the overlay MTU went through with DF set")
	}

	// Names resolve across hosts.
	waitCluster(t, func() bool {
		out, _, _ := h1.ctnet("exec", "c1", "getent", "hosts", "c3")
		return strings.HasPrefix(out, ips[2]+" ")
	}, "c1 to resolve c3 (on h3)")
	waitCluster(t, func() bool {
		out, _, _ := h3.ctnet("exec", "c3", "getent", "hosts", "c2")
		return strings.HasPrefix(out, ips[1]+" ")
	}, "c3 to resolve c2 (on h2)")

	// NAT out through the container's own host: h2's upstream sees c2's
	// connection from h2's address; h1's upstream (another namespace at
	// the same address) sees nothing of it.
	if got := containerSource(t, h2, h2.s, "c2"); got != sandbox.HostAddr {
		t.Errorf("h2's upstream saw c2 from %q, want %s", got, sandbox.HostAddr)
	}
	if got := containerSource(t, h2, h1.s, "c2"); got != "" {
		t.Errorf("h1's upstream saw c2's connection (from %s)", got)
	}

	// A port published on the host the container runs on, and only there.
	h3.must("run", "-d", "--name", "web", "--network", "ov", "-p", "8080:80", "host", "socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello-from-h3")
	waitCluster(t, func() bool { return tcpGet(h3.s.Upstream, sandbox.HostAddr, "8080") == "hello-from-h3" }, "web's port on h3")
	if got := tcpGet(h1.s.Upstream, sandbox.HostAddr, "8080"); strings.Contains(got, "hello") {
		t.Errorf("h1 answers web's port: %q", got)
	}
	// …and the same host port is free on another host.
	h1.must("run", "-d", "--name", "web1", "--network", "ov", "-p", "8080:80", "host", "socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello-from-h1")
	waitCluster(t, func() bool { return tcpGet(h1.s.Upstream, sandbox.HostAddr, "8080") == "hello-from-h1" }, "web1's port on h1")
	// web on h3 is reachable from c1 on h1 across the overlay.
	if out, _, _ := h1.ctnet("exec", "c1", "socat", "-T2", "-", "TCP:"+h3.ip("web")+":80"); strings.TrimSpace(out) != "hello-from-h3" {
		t.Errorf("c1 → web:80 across hosts: %q", out)
	}

	// Bridge networks stay each host's own: the same default subnet on each.
	b1 := h1.run("bridge", "b1")
	b2 := h2.run("bridge", "b2")
	if b1 != "172.17.0.2" || b2 != "172.17.0.2" {
		t.Errorf("default network on h1, h2: %s, %s", b1, b2)
	}
	if out := h2.must("network", "ls", "--format", "{{.Name}} {{.Scope}}"); out != "bridge local\nhost local\nnone local\nov global\n" {
		t.Errorf("network ls on h2: %q", out)
	}

	// A global network in use on another host is not removed.
	if _, e, err := h1.ctnet("network", "rm", "ov"); err == nil || !strings.Contains(e, "c2 on host h2 (198.51.100.12)") {
		t.Errorf("rm of ov in use on h2: %v %s", err, e)
	}

	// Containers gone: each host drops the network's kernel side, and its
	// agent ends.
	h1.must("rm", "-f", "c1", "web1")
	h2.must("rm", "-f", "c2")
	h3.must("rm", "-f", "c3", "web")
	h1.must("network", "rm", "ov")
	for _, h := range c.hosts {
		waitCluster(t, func() bool { return len(h.overlayLinks()) == 0 && len(h.processes("ctnet-overlay")) == 0 }, h.name+"'s overlay links and agent to go")
		if out, e, err := h.ctnet("system", "reconcile"); err != nil || out+e != "" {
			t.Errorf("%s: reconcile after everything went: %v %s%s", h.name, err, out, e)
		}
	}
}

// waitCluster is waitFor with room for a loaded machine: a cluster's
// changes pass through etcd (which fsyncs) and every host's agent.
func waitCluster(t *testing.T, ok func() bool, what string) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if ok() {
			return
		}
	}
	t.Fatalf("timed out waiting for %s", what)
}

// containerSource connects from a container on h to a listener in the
// upstream of sandbox at, and returns the source address the listener saw
// ("" when nothing arrived).
func containerSource(t *testing.T, h *ovHost, at *sandbox.Sandbox, ctr string) string {
	t.Helper()
	srv := at.Upstream.Command("socat", "-T5", "TCP-LISTEN:7777,reuseaddr", "SYSTEM:echo $SOCAT_PEERADDR")
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	for range 20 {
		o, _, err := h.ctnet("exec", ctr, "socat", "-T2", "-", "TCP:"+sandbox.UpstreamAddr+":7777,connect-timeout=1")
		if err == nil && strings.TrimSpace(o) != "" {
			return strings.TrimSpace(o)
		}
		time.Sleep(100 * time.Millisecond)
	}
	return ""
}
