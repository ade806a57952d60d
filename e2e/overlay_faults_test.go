package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// Faults of a cluster, each a test: quorum lost and back, a member
// restarted, a partition between hosts healed, a host cut off longer than
// its TTL and back, a host that disappears, 30 runs at once, and a crash at
// every step of an attach.

// kernelState is what the kernel of a host holds of the overlay: its links
// (bridges, vxlan devices and the veths on them), the vxlan devices'
// forwarding and neighbour entries, and ctnet's firewall tables, with the
// ids that differ between runs replaced.
func (h *ovHost) kernelState(t *testing.T) string {
	t.Helper()
	var lines []string
	onOverlay := map[string]bool{}
	links := hostLinks(t, h.s.Host)
	for _, l := range links {
		if strings.HasPrefix(l.Name, "ov-") || strings.HasPrefix(l.Name, "vx-") {
			onOverlay[l.Name] = true
		}
	}
	for _, l := range links {
		if onOverlay[l.Name] || onOverlay[l.Master] {
			lines = append(lines, fmt.Sprintf("link %s kind=%s master=%s mtu=%d up=%v %v", l.Name, l.Kind, l.Master, l.MTU, l.Up, l.Addrs))
		}
		if l.Kind != "vxlan" {
			continue
		}
		var fdb []struct{ Mac, Dst string }
		json.Unmarshal([]byte(h.s.Host.MustRun("bridge", "-j", "fdb", "show", "dev", l.Name)), &fdb)
		for _, e := range fdb {
			if e.Dst != "" {
				lines = append(lines, fmt.Sprintf("fdb %s %s dst %s", l.Name, e.Mac, e.Dst))
			}
		}
		var neigh []struct {
			Dst, Lladdr string
			State       []string
		}
		json.Unmarshal([]byte(h.s.Host.MustRun("ip", "-j", "neigh", "show", "dev", l.Name)), &neigh)
		for _, e := range neigh {
			lines = append(lines, fmt.Sprintf("neigh %s %s %s %v", l.Name, e.Dst, e.Lladdr, e.State))
		}
	}
	for _, fam := range []string{"inet", "bridge"} {
		nft, err := h.s.Host.Run("nft", "list", "table", fam, "ctnet")
		if err != nil {
			nft = "no table " + fam + " ctnet"
		}
		lines = append(lines, sortedNftElements(nft, normalizeIDs))
	}
	sort.Strings(lines)
	return normalizeIDs(strings.Join(lines, "\n"))
}

// storeState is what the store says of the overlay network and the host's
// containers, as this host sees it, and the resolver's records.
func (h *ovHost) storeState(t *testing.T, net string) string {
	t.Helper()
	var lines []string
	n := h.inspect(net)
	for _, ep := range n.Containers {
		lines = append(lines, fmt.Sprintf("endpoint %s %s %s %s", ep.Name, ep.IPv4Address, ep.MacAddress, ep.Host))
	}
	for _, p := range n.Peers {
		lines = append(lines, fmt.Sprintf("peer %s %s", p.Name, p.IP))
	}
	for _, l := range strings.Split(strings.TrimSpace(h.must("ps", "-a", "--format", "{{.Names}} {{.State}} {{.Networks}}")), "\n") {
		lines = append(lines, "container "+l)
	}
	if b, err := h.s.Host.Run("cat", filepath.Join(h.s.RunRoot, "dns.json")); err == nil {
		var snap struct {
			Records []struct {
				Network, Name string
				Addrs         []string
			}
		}
		json.Unmarshal([]byte(b), &snap)
		for _, r := range snap.Records {
			lines = append(lines, fmt.Sprintf("dns %s %s %v", r.Network, r.Name, r.Addrs))
		}
	}
	sort.Strings(lines)
	return normalizeIDs(strings.Join(lines, "\n"))
}

// state is the whole cluster's, host by host.
func (c *ovCluster) state(t *testing.T, net string) string {
	t.Helper()
	var b strings.Builder
	for _, h := range c.hosts {
		fmt.Fprintf(&b, "== %s\n%s\n%s\n", h.name, h.kernelState(t), h.storeState(t, net))
	}
	return b.String()
}

func (c *ovCluster) kernelStates(t *testing.T) string {
	t.Helper()
	var b strings.Builder
	for _, h := range c.hosts {
		fmt.Fprintf(&b, "== %s\n%s\n", h.name, h.kernelState(t))
	}
	return b.String()
}

// waitState waits until the cluster's state is want (agents apply a change
// of the store some milliseconds after it), at most 20 s.
func (c *ovCluster) waitState(t *testing.T, net, want, what string) {
	t.Helper()
	var got string
	for range 100 {
		if got = c.state(t, net); got == want {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	t.Fatalf("%s: the cluster is not as expected:\n%s", what, lineDiff(want, got))
}

// converged waits until every host's vxlan devices know every other host's
// endpoints on the network.
func (c *ovCluster) converged(t *testing.T, net string) {
	t.Helper()
	waitCluster(t, func() bool {
		n := c.hosts[0].inspect(net)
		for _, h := range c.hosts {
			has := false // a host without endpoints has no tunnel to know them by
			for _, ep := range n.Containers {
				has = has || strings.HasPrefix(ep.Host, h.name+" ")
			}
			if !has {
				continue
			}
			ks := h.kernelState(t)
			for _, ep := range n.Containers {
				if !strings.HasPrefix(ep.Host, h.name+" ") && !strings.Contains(ks, " "+ep.MacAddress+" dst ") {
					return false
				}
			}
		}
		return true
	}, "every host to know every endpoint")
}

// quiet checks that reconcile finds nothing to do on any host.
func (c *ovCluster) quiet(t *testing.T) {
	t.Helper()
	for _, h := range c.hosts {
		if o, e, err := h.ctnet("system", "reconcile"); err != nil || o+e != "" {
			t.Errorf("%s: reconcile: err=%v, printed:\n%s%s", h.name, err, o, e)
		}
	}
}

// allPing checks that each container reaches every other one.
func allPing(t *testing.T, ctrs map[string]*ovHost, ips map[string]string) {
	t.Helper()
	for from, h := range ctrs {
		for to, ip := range ips {
			if from != to {
				if err := h.ping(from, ip); err != nil {
					t.Error(err)
				}
			}
		}
	}
}

// threeContainers makes network ov with c1, c2, c3 on h1, h2, h3.
func (c *ovCluster) threeContainers(t *testing.T) (map[string]*ovHost, map[string]string) {
	t.Helper()
	c.hosts[0].must("network", "create", "-d", "overlay", "--subnet", "10.200.0.0/16", "ov")
	ctrs, ips := map[string]*ovHost{}, map[string]string{}
	for i, h := range c.hosts {
		name := fmt.Sprintf("c%d", i+1)
		ctrs[name], ips[name] = h, h.run("ov", name)
	}
	c.converged(t, "ov")
	allPing(t, ctrs, ips)
	return ctrs, ips
}

func oneLineError(t *testing.T, what, stderr string) {
	t.Helper()
	if strings.Count(strings.TrimSpace(stderr), "\n") != 0 || !strings.HasPrefix(stderr, "Error: ") {
		t.Errorf("%s: want one line of error, got:\n%s", what, stderr)
	}
}

func TestOverlayQuorumLost(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3, "CTNET_STORE_TIMEOUT=3s")
	h1, h2 := c.hosts[0], c.hosts[1]
	ctrs, ips := c.threeContainers(t)
	before := c.state(t, "ov")
	kernel := c.kernelStates(t)
	ns := h1.s.Netns()
	pins := map[string]string{}
	for name, h := range ctrs {
		pins[name] = filepath.Join(h.s.RunRoot, "netns", containerID(t, h, name))
	}

	c.etcd.CutQuorum()
	for _, op := range []struct {
		h    *ovHost
		args []string
	}{
		{h1, []string{"network", "create", "-d", "overlay", "--subnet", "10.210.0.0/16", "ov2"}},
		{h2, []string{"network", "create", "--subnet", "10.77.0.0/24", "local"}},
		{h1, []string{"run", "-d", "--name", "x", "--network", "ov", "host", "sleep", "600"}},
		{h2, []string{"run", "-d", "--name", "y", "host", "sleep", "600"}},
		{h1, []string{"network", "connect", "ov", "--netns", ns.NetPath()}},
		{h2, []string{"network", "connect", "ov", "c2"}},
		{h1, []string{"network", "rm", "ov"}},
	} {
		o, e, err := op.h.ctnet(op.args...)
		what := op.h.name + ": ctnet " + strings.Join(op.args, " ")
		if err == nil {
			t.Errorf("%s worked without quorum:\n%s", what, o)
			continue
		}
		oneLineError(t, what, e)
		if !strings.Contains(e, "no quorum") || !strings.Contains(e, "retry when the cluster is healthy") {
			t.Errorf("%s: %s", what, e)
		}
	}
	// Running containers keep talking: the data plane needs no store (nor
	// does nsenter, unlike ctnet exec).
	for from, h := range ctrs {
		for to, ip := range ips {
			if from != to {
				if err := h.nsPing(pins[from], ip); err != nil {
					t.Error(err)
				}
			}
		}
	}
	if got := c.kernelStates(t); got != kernel {
		t.Errorf("the failed commands changed a kernel:\n%s", lineDiff(kernel, got))
	}

	c.etcd.RestoreQuorum()
	for _, h := range c.hosts {
		if o, e, err := h.ctnet("system", "reconcile"); err != nil {
			t.Errorf("%s: reconcile after quorum came back: %v\n%s%s", h.name, err, o, e)
		}
	}
	c.quiet(t)
	if got := c.state(t, "ov"); got != before {
		t.Errorf("after quorum came back the cluster is not as before:\n%s", lineDiff(before, got))
	}
	ips["x"], ctrs["x"] = h1.run("ov", "x"), h1
	c.converged(t, "ov")
	allPing(t, ctrs, ips)
}

func TestOverlayMemberRestarted(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3)
	ctrs, ips := c.threeContainers(t)
	// The first endpoint every client tries, killed, then another one
	// stopped as an operator would.
	for i, m := range []int{0, 1} {
		member := c.etcd.Members[m]
		if i == 0 {
			member.Kill()
		} else {
			member.Stop()
		}
		h := c.hosts[i]
		name := fmt.Sprintf("x%d", i+1)
		ips[name], ctrs[name] = h.run("ov", name), h
		c.converged(t, "ov")
		allPing(t, ctrs, ips)
		member.Restart()
		c.quiet(t)
	}
	name := "x3"
	ips[name], ctrs[name] = c.hosts[2].run("ov", name), c.hosts[2]
	c.converged(t, "ov")
	allPing(t, ctrs, ips)
}

func TestOverlayPartitionHealed(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3, "CTNET_HOST_TTL=3s")
	h1, h2, h3 := c.hosts[0], c.hosts[1], c.hosts[2]
	ctrs, ips := c.threeContainers(t)

	// h1 and h2 cannot reach each other; both still reach etcd and h3.
	c.ul.MustRun("nft", "add table bridge part; add chain bridge part cut { type filter hook forward priority 0; }; "+
		"add rule bridge part cut iifname uh1 oifname uh2 drop; add rule bridge part cut iifname uh2 oifname uh1 drop")
	if err := h1.pingFails("c1", ips["c2"]); err != nil {
		t.Error(err)
	}
	for _, p := range [][2]string{{"c1", "c3"}, {"c2", "c3"}, {"c3", "c1"}} {
		if err := ctrs[p[0]].ping(p[0], ips[p[1]]); err != nil {
			t.Error(err)
		}
	}
	ips["c4"], ctrs["c4"] = h1.run("ov", "c4"), h1 // the store works meanwhile
	c.converged(t, "ov")
	if err := h3.ping("c3", ips["c4"]); err != nil {
		t.Error(err)
	}
	if err := h2.pingFails("c2", ips["c4"]); err != nil {
		t.Error(err)
	}
	c.ul.MustRun("nft", "delete table bridge part")
	allPing(t, ctrs, ips)
	c.quiet(t)

	// h2 cut off from everything, etcd too, for longer than its TTL: the
	// others free its endpoint; back, it takes it back (nobody took its
	// address meanwhile) and everyone reaches it again.
	before := c.state(t, "ov")
	id2 := containerID(t, h2, "c2")
	c.ul.MustRun("ip", "link", "set", h2.port, "down")
	waitCluster(t, func() bool { _, ok := h1.inspect("ov").Containers[id2]; return !ok }, "h1 to see c2 freed")
	if err := h1.pingFails("c1", ips["c2"]); err != nil {
		t.Error(err)
	}
	c.ul.MustRun("ip", "link", "set", h2.port, "up")
	waitCluster(t, func() bool { _, ok := h1.inspect("ov").Containers[id2]; return ok }, "h2 to take c2 back")
	c.converged(t, "ov")
	allPing(t, ctrs, ips)
	c.quiet(t)
	if got := c.state(t, "ov"); got != before {
		t.Errorf("after h2 came back:\n%s", lineDiff(before, got))
	}
	if log := h2.s.Host.MustRun("cat", filepath.Join(h2.s.RunRoot, "overlay.log")); !strings.Contains(log, "took back "+ips["c2"]+" of c2") {
		t.Errorf("h2's agent log:\n%s", log)
	}
}

// nsPing pings from the namespace pinned at pin, without ctnet.
func (h *ovHost) nsPing(pin, addr string) error {
	var err error
	for range 5 {
		var out string
		if out, err = h.s.Host.Run("nsenter", "--net="+pin, "ping", "-c1", "-W1", addr); err == nil {
			return nil
		}
		err = fmt.Errorf("%s: ping %s from %s: %v\n%s", h.name, addr, pin, err, out)
	}
	return err
}

func containerID(t *testing.T, h *ovHost, name string) string {
	t.Helper()
	return strings.TrimSpace(h.must("inspect", "-f", "{{.Id}}", name))
}

// kill ends every process of the host — its agent, resolver, monitors,
// containers, the holders of its namespaces — at once, as a power cut would;
// its namespaces, links and mounts go with them.
func (h *ovHost) kill(t *testing.T) {
	t.Helper()
	if h.s.Cgroup == "" {
		t.Skip("needs a cgroup2 hierarchy to end a whole host at once")
	}
	if err := os.WriteFile(filepath.Join(h.s.Cgroup, "cgroup.kill"), []byte("1"), 0o644); err != nil {
		t.Fatalf("kill %s: %v", h.name, err)
	}
	waitCluster(t, func() bool {
		_, err := h.c.ul.Run("ip", "link", "show", h.port)
		return err != nil
	}, h.name+"'s namespace to go")
}

func TestOverlayHostDisappears(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3, "CTNET_HOST_TTL=3s")
	h1, h2, h3 := c.hosts[0], c.hosts[1], c.hosts[2]
	ctrs, ips := c.threeContainers(t)
	mac3 := h1.inspect("ov").Containers[containerID(t, h3, "c3")].MacAddress
	if _, e, err := h1.ctnet("run", "-d", "--name", "taker", "--network", "ov", "--ip", ips["c3"], "host", "sleep", "600"); err == nil || !strings.Contains(e, "in use") {
		t.Fatalf("c3's address taken while h3 lives: %v %s", err, e)
	}

	h3.kill(t)
	c.hosts = c.hosts[:2]
	delete(ctrs, "c3")
	delete(ips, "c3")
	for _, h := range c.hosts {
		waitCluster(t, func() bool { return !strings.Contains(h.kernelState(t), mac3) }, h.name+" to drop h3's entries")
	}
	n := h2.inspect("ov")
	if len(n.Containers) != 2 || len(n.Peers) != 2 {
		t.Errorf("after h3 went: %+v", n)
	}
	// Its address is free again.
	ips["taker"], ctrs["taker"] = h1.run("ov", "taker", "--ip", "10.200.0.4"), h1
	allPing(t, ctrs, ips)
	c.quiet(t)
	var freed bool
	for _, h := range c.hosts {
		log := h.s.Host.MustRun("cat", filepath.Join(h.s.RunRoot, "overlay.log"))
		freed = freed || strings.Contains(log, "freed 10.200.0.4 of c3 on network \"ov\": host ")
	}
	if !freed {
		t.Errorf("no agent says it freed c3's address")
	}
}

func TestOverlayConcurrentRuns(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3, "CTNET_STORE_TIMEOUT=60s")
	c.hosts[1].must("network", "create", "-d", "overlay", "--subnet", "10.200.0.0/24", "ov")
	const n = 30
	errs := make([]string, n)
	atOnce(n, func(i int) {
		h := c.hosts[i%3]
		if o, e, err := h.ctnet("run", "-d", "--name", fmt.Sprintf("c%d", i), "--network", "ov", "host", "sleep", "3600"); err != nil {
			errs[i] = fmt.Sprintf("%s: run c%d: %v\n%s%s", h.name, i, err, o, e)
		}
	})
	for _, e := range errs {
		if e != "" {
			t.Error(e)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	nw := c.hosts[0].inspect("ov")
	seen := map[string]string{}
	for _, ep := range nw.Containers {
		if o, dup := seen[ep.IPv4Address]; dup {
			t.Errorf("%s given to %s and %s", ep.IPv4Address, o, ep.Name)
		}
		seen[ep.IPv4Address] = ep.Name
	}
	if len(seen) != n {
		t.Fatalf("%d distinct addresses for %d containers: %v", len(seen), n, seen)
	}
	c.converged(t, "ov")
	var all []string
	for ip := range seen {
		all = append(all, strings.Split(ip, "/")[0])
	}
	slices.Sort(all)
	// Each container pings the 29 others in one exec; a first packet may
	// meet an ARP answer still on its way.
	script := `for ip in ` + strings.Join(all, " ") + `; do
		[ "$ip" = "$self" ] && continue
		ping -c1 -W1 $ip >/dev/null || ping -c1 -W1 $ip >/dev/null || ping -c1 -W2 $ip >/dev/null || echo "unreachable $ip"
	done`
	for i := range n {
		h := c.hosts[i%3]
		name := fmt.Sprintf("c%d", i)
		out, e, err := h.ctnet("exec", "-e", "self="+h.ip(name), name, "sh", "-c", script)
		if err != nil || strings.TrimSpace(out) != "" {
			t.Errorf("%s on %s: %v\n%s%s", name, h.name, err, out, e)
		}
	}
	c.quiet(t)
}

func TestOverlayBadInput(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 1)
	h := c.hosts[0]
	h.must("network", "create", "-d", "overlay", "--subnet", "10.200.0.0/16", "ov")
	before := h.storeState(t, "ov") + h.kernelState(t)
	lone := sandbox.New(t)
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"network", "create", "-d", "overlay", "-o", "com.docker.network.driver.overlay.vxlanid_list=4097", "--subnet", "10.201.0.0/16", "ov2"}, `VNI 4097 is already used by network "ov"`},
		{nil, []string{"network", "create", "-d", "overlay", "-o", "com.docker.network.driver.overlay.vxlanid_list=0", "ov2"}, "want one VNI"},
		{nil, []string{"network", "create", "-d", "overlay", "-o", "com.docker.network.bridge.name=x", "ov2"}, `unknown option "com.docker.network.bridge.name"`},
		{nil, []string{"network", "create", "-d", "overlay", "--subnet", "10.200.1.0/24", "ov2"}, `overlaps network "ov"`},
		{nil, []string{"network", "create", "--subnet", "10.200.1.0/24", "loc"}, `overlaps network "ov"`},
		{nil, []string{"network", "create", "ov"}, `network with name ov already exists`},
		{nil, []string{"--advertise-addr", "192.0.2.9", "network", "ls"}, "--advertise-addr 192.0.2.9 is not an address of this host"},
		{nil, []string{"--advertise-addr", "nosuch0", "network", "ls"}, "neither an address nor an interface"},
		{nil, []string{"--store", "etcd://", "network", "ls"}, "no endpoint"},
		{nil, []string{"--store", "http://10.99.0.1:2379", "network", "ls"}, `unknown scheme "http"`},
		{nil, []string{"--store", "etcd://u:p@10.99.0.1", "network", "ls"}, "would show in ps"},
		{nil, []string{"--host-ttl", "500ms", "network", "ls"}, "shorter than a second"},
		{nil, []string{"--store", "etcd://10.99.0.1:1", "--command-timeout", "2s", "network", "ls"}, "etcd at 10.99.0.1:1: no member answers"},
	} {
		cmd := append([]string{}, tc.args...)
		o, e, err := h.ctnet(cmd...)
		if err == nil || !strings.Contains(e, tc.want) {
			t.Errorf("ctnet %s: %v\nstdout: %s\nstderr: %s\nwant %q", strings.Join(cmd, " "), err, o, e, tc.want)
			continue
		}
		oneLineError(t, strings.Join(cmd, " "), e)
	}
	if got := h.storeState(t, "ov") + h.kernelState(t); got != before {
		t.Errorf("bad input changed the cluster:\n%s", lineDiff(before, got))
	}
	// Without a shared store there is no overlay, and the store's options
	// need the store.
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"network", "create", "-d", "overlay", "ov"}, "needs hosts that share a store: run ctnet with --store etcd://"},
		{[]string{"--cacert", "/x.pem", "network", "ls"}, "--cacert is an option of a shared store"},
	} {
		o, e, err := lone.Ctnet(tc.args...)
		if err == nil || !strings.Contains(e, tc.want) {
			t.Errorf("one host: ctnet %s: %v\n%s%s\nwant %q", strings.Join(tc.args, " "), err, o, e, tc.want)
		}
	}
	if out := lone.MustCtnet("network", "ls", "--format", "{{.Name}} {{.Scope}}"); out != "bridge local\nhost local\nnone local\n" {
		t.Errorf("one host's networks: %q", out)
	}
}

// crash runs ctnet on the host with CTNET_CRASH_AT=step and checks that it
// died of SIGKILL there.
func (h *ovHost) crash(t *testing.T, step string, args ...string) {
	t.Helper()
	cmd := h.s.Host.Command(sandbox.Binary(t), args...)
	cmd.Env = append(slices.Clone(h.env), "CTNET_CRASH_AT="+step)
	var o, e strings.Builder
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("%s: CTNET_CRASH_AT=%s ctnet %s: want death by SIGKILL, got %v\n%s%s", h.name, step, strings.Join(args, " "), err, o.String(), e.String())
	}
}

// TestOverlayCrashAtEveryStep kills ctnet at every step of an attachment to
// an overlay network on a host that had none (its agent not running), runs
// `system reconcile` there, and checks that the whole cluster — the host's
// kernel, the other hosts' entries and records, the store — ends exactly as
// before the operation, or exactly as after it (then undone by the next
// operation, which must bring back the state from before).
func TestOverlayCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	c := newOvCluster(t, 3)
	h1, h2, h3 := c.hosts[0], c.hosts[1], c.hosts[2]
	h2.must("network", "create", "-d", "overlay", "--subnet", "10.200.0.0/16", "ov")
	h2.run("ov", "c2")
	h3.run("ov", "c3")
	// h1 serves names already (on a local network), so that the state of
	// its resolver is there before the first case.
	h1.must("network", "create", "--subnet", "10.77.0.0/24", "loc")
	h1.run("loc", "l1")
	ns := h1.s.Netns()
	idle := func(what string) {
		waitCluster(t, func() bool { return len(h1.processes("ctnet-overlay")) == 0 && len(h1.overlayLinks()) == 0 }, what)
	}
	idle("h1 to have no overlay agent and no overlay links")
	c.converged(t, "ov")
	before := c.state(t, "ov")

	connect := []string{"network", "connect", "ov", "--netns", ns.NetPath()}
	disconnect := []string{"network", "disconnect", "ov", "--netns", ns.NetPath()}
	run := []string{"run", "-d", "--name", "x", "--network", "ov", "-p", "8080:80", "host", "sleep", "600"}
	rm := []string{"rm", "-f", "x"}
	for _, tc := range []struct {
		step     string
		op, next []string
	}{
		{"overlay-agent", connect, disconnect},
		{"attach-planned", connect, disconnect},
		{"attach", connect, disconnect},
		{"overlay-agent", run, rm},
		{"run-netns", run, rm},
		{"attach-planned", run, rm},
		{"attach", run, rm},
		{"publish", run, rm},
		{"run-attach", run, rm},
		{"run-create", run, rm},
	} {
		t.Run(tc.step+"/"+tc.op[0], func(t *testing.T) {
			h1.crash(t, tc.step, tc.op...)
			if o, e, err := h1.ctnet("system", "reconcile"); err != nil {
				t.Fatalf("reconcile after the crash: %v\n%s%s", err, o, e)
			} else {
				t.Logf("reconcile after the crash:\n%s%s", o, e)
			}
			// Made, or not: the attachment is in the store whole or not at all.
			made := func() (string, bool) {
				for _, ep := range h2.inspect("ov").Containers {
					if ep.Name == ns.NetPath() || ep.Name == "x" {
						return strings.Split(ep.IPv4Address, "/")[0], true
					}
				}
				return "", false
			}
			if ip, ok := made(); ok {
				t.Logf("the operation was made; checking it works, then undoing it")
				c.converged(t, "ov")
				if err := h2.ping("c2", ip); err != nil {
					t.Error(err)
				}
			} else {
				c.waitState(t, "ov", before, "after the crash and reconcile")
				t.Logf("state after reconcile: as before the operation; doing it again")
				h1.must(tc.op...)
				ip, _ := made()
				c.converged(t, "ov")
				if err := h3.ping("c3", ip); err != nil {
					t.Error(err)
				}
			}
			h1.must(tc.next...)
			idle("h1's agent to end and its overlay links to go")
			c.waitState(t, "ov", before, "after the next operation")
			c.quiet(t)
		})
	}
}
