package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// crashEnv is one sandbox set up for a crash case, with the namespaces its
// setup made under names, so that the states of two sandboxes compare.
type crashEnv struct {
	s  *sandbox.Sandbox
	ns map[string]*sandbox.NS
}

func newCrashEnv(t *testing.T, setup func(*testing.T, *crashEnv)) *crashEnv {
	t.Helper()
	c := &crashEnv{s: sandbox.New(t), ns: map[string]*sandbox.NS{}}
	removeContainersAtEnd(t, c.s)
	if setup != nil {
		setup(t, c)
	}
	return c
}

// args replaces {NAME} by the path of the namespace NAME.
func (c *crashEnv) args(a []string) []string {
	out := make([]string, len(a))
	for i, s := range a {
		for name, ns := range c.ns {
			s = strings.ReplaceAll(s, "{"+name+"}", ns.NetPath())
		}
		out[i] = s
	}
	return out
}

// crashSetup: a user network with a namespace on it, a spare namespace, a
// running container on the default network and a network nobody uses.
func crashSetup(t *testing.T, c *crashEnv) {
	s := c.s
	withBusybox(t, s)
	s.MustCtnet("network", "create", "web")
	c.ns["a"], c.ns["b"] = s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "web", "--netns", c.ns["a"].NetPath())
	s.MustCtnet("run", "-d", "--name", "c1", "busybox", "sleep", "600")
	s.MustCtnet("network", "create", "--subnet", "10.61.0.0/24", "spare")
}

// crashCases covers every crash point; several steps are reached by more
// than one command.
var crashCases = []struct {
	step, name string
	fresh      bool // no setup: the operation is the first ctnet command
	// cluster: reached only on hosts that share a store; exercised by
	// TestOverlayCrashAtEveryStep.
	cluster  bool
	ovs      bool // a step of the OVS driver: exercised by TestOVSCrashAtEveryStep
	op, next []string
}{
	{step: "network-create", name: "network-create",
		op: []string{"network", "create", "web2"}, next: []string{"network", "rm", "web2"}},
	{step: "network-create", name: "default-network", fresh: true,
		op: []string{"network", "ls"}, next: []string{"network", "create", "web"}},
	{step: "network-rm", name: "network-rm",
		op: []string{"network", "rm", "spare"}, next: []string{"network", "create", "--subnet", "10.61.0.0/24", "spare"}},
	{step: "attach-planned", name: "network-connect",
		op: []string{"network", "connect", "web", "--netns", "{b}"}, next: []string{"network", "disconnect", "web", "--netns", "{b}"}},
	{step: "overlay-agent", name: "network-connect", cluster: true},
	{step: "attach", name: "network-connect",
		op: []string{"network", "connect", "web", "--netns", "{b}"}, next: []string{"network", "disconnect", "web", "--netns", "{b}"}},
	{step: "attach", name: "run",
		op: []string{"run", "-d", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
	{step: "detach", name: "network-disconnect",
		op: []string{"network", "disconnect", "web", "--netns", "{a}"}, next: []string{"network", "connect", "web", "--netns", "{a}"}},
	{step: "run-netns", name: "run",
		op: []string{"run", "-d", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
	{step: "run-netns", name: "run-none",
		op: []string{"run", "-d", "--network", "none", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
	{step: "run-attach", name: "run",
		op: []string{"run", "-d", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
	{step: "run-attach", name: "run-user-network",
		op: []string{"run", "-d", "--network", "web", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
	{step: "run-create", name: "run",
		op: []string{"run", "-d", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
	{step: "rm", name: "rm-f",
		op: []string{"rm", "-f", "c1"}, next: []string{"run", "-d", "--name", "c1", "busybox", "sleep", "600"}},
	{step: "rm", name: "run-rm",
		op: []string{"run", "--rm", "--name", "c2", "busybox", "true"}, next: []string{"run", "--rm", "--name", "c2", "busybox", "true"}},
	{step: "ovs-bridge", name: "ovs", ovs: true},
	{step: "ovs-port", name: "ovs", ovs: true},
	{step: "publish", name: "run-p",
		op: []string{"run", "-d", "-p", "8080:80", "--name", "c2", "busybox", "sleep", "600"}, next: []string{"rm", "-f", "c2"}},
}

// crashPoints lists the steps named by crash.Point calls in ctnet's source.
func crashPoints(t *testing.T) map[string]bool {
	t.Helper()
	var files []string
	err := filepath.WalkDir("../internal", func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) == 0 {
		t.Fatalf("sources: %v", err)
	}
	re := regexp.MustCompile(`crash\.Point\("([^"]+)"\)`)
	steps := map[string]bool{}
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range re.FindAllStringSubmatch(string(b), -1) {
			steps[m[1]] = true
		}
	}
	return steps
}

// TestCrashAtEveryStep kills ctnet at each crash point, runs
// `system reconcile`, and checks that the host is exactly as before the
// operation or as after it (the same operation finished in a twin sandbox),
// that a second reconcile finds nothing, and that work goes on.
func TestCrashAtEveryStep(t *testing.T) {
	t.Parallel()
	sandbox.RequireRoot(t)
	steps := crashPoints(t)
	covered := map[string]bool{}
	for _, c := range crashCases {
		covered[c.step] = true
	}
	var missing []string
	for s := range steps {
		if !covered[s] {
			missing = append(missing, s)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 {
		t.Errorf("crash points in internal/ that no case exercises: %s; add them to crashCases", strings.Join(missing, ", "))
	}
	t.Logf("crash points in the source: %d", len(steps))

	for _, tc := range crashCases {
		t.Run(tc.step+"/"+tc.name, func(t *testing.T) {
			if !steps[tc.step] {
				t.Fatalf("no crash point %q in the source", tc.step)
			}
			if tc.cluster {
				t.Skip("a step of hosts sharing a store: see TestOverlayCrashAtEveryStep")
			}
			if tc.ovs {
				t.Skip("a step of the OVS driver: see TestOVSCrashAtEveryStep")
			}
			t.Parallel()
			setup := crashSetup
			if tc.fresh {
				setup = nil
			}
			twin := newCrashEnv(t, setup)
			twin.s.MustCtnet(twin.args(tc.op)...)
			waitPortsSettled(t, twin.s)
			after := hostState(t, twin)

			c := newCrashEnv(t, setup)
			before := ""
			if !tc.fresh { // on a fresh sandbox looking would create the default network
				waitPortsSettled(t, c.s)
				before = hostState(t, c)
			}
			crashCtnet(t, c.s, tc.step, c.args(tc.op)...)
			o, e, err := c.s.Ctnet("system", "reconcile")
			if err != nil {
				t.Fatalf("reconcile after the crash: %v\n%s%s", err, o, e)
			}
			t.Logf("reconcile after the crash:\n%s%s", o, e)

			got, which := settleState(t, c, before, after)
			switch which {
			case 0:
				t.Logf("state after reconcile: as before the operation")
			case 1:
				t.Logf("state after reconcile: as after the operation")
			default:
				want, name := after, "after"
				if before != "" && diffCount(before, got) < diffCount(after, got) {
					want, name = before, "before"
				}
				t.Fatalf("after the crash and reconcile the host is neither as before nor as after %s; closest is %q:\n%s",
					strings.Join(tc.op, " "), name, lineDiff(want, got))
			}
			if o, e, err := c.s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
				t.Errorf("second reconcile: err=%v, printed:\n%s%s", err, o, e)
			}

			if which == 0 {
				if o, e, err := c.s.Ctnet(c.args(tc.op)...); err != nil {
					t.Fatalf("ctnet %s after the crash and reconcile: %v\n%s%s", strings.Join(tc.op, " "), err, o, e)
				}
			}
			if o, e, err := c.s.Ctnet(c.args(tc.next)...); err != nil {
				t.Fatalf("next operation ctnet %s: %v\n%s%s", strings.Join(tc.next, " "), err, o, e)
			}
			waitPortsSettled(t, c.s)
			if o, e, err := c.s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
				t.Errorf("reconcile after the next operation: err=%v, printed:\n%s%s", err, o, e)
			}
		})
	}
}

// crashCtnet runs ctnet with CTNET_CRASH_AT=step and checks that it died of
// SIGKILL there.
func crashCtnet(t *testing.T, s *sandbox.Sandbox, step string, args ...string) {
	t.Helper()
	cmd := s.Host.Command(sandbox.Binary(t), args...) // nsenter execs ctnet: its status is ctnet's
	cmd.Env = append(s.Env(), "CTNET_CRASH_AT="+step)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	ws, _ := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if !ws.Signaled() || ws.Signal() != syscall.SIGKILL {
		t.Fatalf("CTNET_CRASH_AT=%s ctnet %s: want death by SIGKILL, got %v\nstdout: %s\nstderr: %s",
			step, strings.Join(args, " "), err, o.String(), e.String())
	}
}

// settleState waits for the background reclaim of dropped namespaces and
// returns the state with the index of the wanted state it equals, or -1.
func settleState(t *testing.T, c *crashEnv, want ...string) (string, int) {
	t.Helper()
	var got string
	for i := 0; i < 40; i++ {
		got = hostState(t, c)
		for j, w := range want {
			if w != "" && got == w {
				return got, j
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	return got, -1
}

// hostState is what an operation may change, normalised so that two
// sandboxes set up alike compare equal: links (kind, master, MTU, up) and
// addresses of the host, ctnet's nftables table, every network as inspect
// shows it, the containers, and files and mounts under the run root.
func hostState(t *testing.T, c *crashEnv) string {
	t.Helper()
	s := c.s
	var lines []string
	add := func(format string, a ...any) { lines = append(lines, fmt.Sprintf(format, a...)) }

	for _, l := range hostLinks(t, s.Host) {
		add("link %s kind=%s master=%s mtu=%d up=%v", l.Name, l.Kind, l.Master, l.MTU, l.Up)
		for _, a := range l.Addrs {
			add("addr %s %s", l.Name, a)
		}
	}

	nft, err := s.Host.Run("nft", "list", "table", "inet", "ctnet")
	if err != nil {
		nft = "no table inet ctnet"
	}
	lines = append(lines, sortedNftElements(nft, normalizeIDs))

	names := strings.Fields(s.MustCtnet("network", "ls", "--format", "{{.Name}}"))
	for _, n := range inspectNetworks(t, s, names...) {
		var cfg []string
		for _, c := range n.IPAM.Config {
			cfg = append(cfg, c.Subnet+" via "+c.Gateway)
		}
		var opts []string
		for k, v := range n.Options {
			opts = append(opts, k+"="+v)
		}
		sort.Strings(opts)
		add("network %s driver=%s internal=%v ipam=%v options=%v", n.Name, n.Driver, n.Internal, cfg, opts)
		for _, ep := range n.Containers {
			add("endpoint %s %s %s %s %s", n.Name, ep.Name, ep.IPv4Address, ep.IPv6Address, ep.MacAddress)
		}
	}

	// The embedded resolver's records and namespaces.
	if b, err := s.Host.Run("cat", filepath.Join(s.RunRoot, "dns.json")); err == nil {
		var snap struct {
			Records []struct {
				Network, Name string
				Aliases       []string
				Addrs         []string
			}
			Namespaces []struct {
				Path     string
				Networks []string
			}
		}
		if err := json.Unmarshal([]byte(b), &snap); err != nil {
			t.Fatalf("dns.json: %v\n%s", err, b)
		}
		for _, r := range snap.Records {
			add("dns record %s %s aliases=%v addrs=%v", r.Network, r.Name, r.Aliases, r.Addrs)
		}
		for _, n := range snap.Namespaces {
			add("dns namespace %s networks=%v", n.Path, n.Networks)
		}
	}

	for _, l := range strings.Split(s.MustCtnet("ps", "-a", "--format", "{{.Names}} {{.Image}} {{.State}} {{.Networks}}"), "\n") {
		if l != "" {
			add("container %s", l)
		}
	}
	// The resolver's own files belong to the instance (its records are
	// compared above).
	for _, l := range strings.Split(s.Host.MustRun("find", s.RunRoot, "-xdev", "-not", "-name", "dns.json*"), "\n") {
		if l != "" {
			add("file %s", l)
		}
	}
	for _, l := range strings.Split(s.Host.MustRun("cat", "/proc/self/mountinfo"), "\n") {
		f := strings.Fields(l)
		sep := -1
		for i, w := range f {
			if w == "-" {
				sep = i
			}
		}
		if len(f) > 4 && sep > 0 && sep+1 < len(f) && strings.HasPrefix(f[4], s.RunRoot) {
			add("mount %s %s", f[4], f[sep+1])
		}
	}

	out := strings.Join(lines, "\n")
	for name, ns := range c.ns {
		out = strings.ReplaceAll(out, ns.NetPath(), "<ns "+name+">")
	}
	out = strings.ReplaceAll(out, s.RunRoot, "$RUN")
	out = strings.ReplaceAll(out, s.Root, "$ROOT")
	lines = strings.Split(normalizeIDs(out), "\n")
	sort.Strings(lines)
	return strings.Join(lines, "\n") + "\n"
}

// Ids and the names made from them differ from sandbox to sandbox.
var volatile = []struct {
	re   *regexp.Regexp
	with string
}{
	{regexp.MustCompile(`\b[0-9a-f]{64}\b`), "<id>"},
	{regexp.MustCompile(`\bveth[0-9a-f]{7}\b`), "veth<id>"},
	{regexp.MustCompile(`\b[0-9a-f]{12}\b`), "<id12>"},
	// a network's private /64 for IPv6 clients of published ports is derived from its id
	{regexp.MustCompile(`\bfd[0-9a-f]{2}(:[0-9a-f]{1,4}){3}::`), "<ula64>::"},
}

func normalizeIDs(s string) string {
	for _, r := range volatile {
		s = r.re.ReplaceAllString(s, r.with)
	}
	return s
}

type hostLink struct {
	Name, Kind, Master string
	MAC                string
	MTU                int
	Up                 bool
	Addrs              []string // global and host scope
}

// hostLinks lists the links of a namespace with their addresses.
func hostLinks(t *testing.T, ns *sandbox.NS) []hostLink {
	t.Helper()
	var links []struct {
		Ifname, Master string
		Address        string
		Flags          []string
		MTU            int
		Linkinfo       struct {
			Kind string `json:"info_kind"`
		}
	}
	if err := json.Unmarshal([]byte(ns.MustRun("ip", "-d", "-j", "link")), &links); err != nil {
		t.Fatalf("ip -j link: %v", err)
	}
	var addrs []struct {
		Ifname   string
		AddrInfo []struct {
			Local     string
			Prefixlen int
			Scope     string
		} `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(ns.MustRun("ip", "-j", "addr")), &addrs); err != nil {
		t.Fatalf("ip -j addr: %v", err)
	}
	byName := map[string][]string{}
	for _, a := range addrs {
		for _, ai := range a.AddrInfo {
			if ai.Scope != "link" { // link-local addresses follow the MAC, which is random
				byName[a.Ifname] = append(byName[a.Ifname], fmt.Sprintf("%s/%d", ai.Local, ai.Prefixlen))
			}
		}
	}
	var out []hostLink
	for _, l := range links {
		h := hostLink{Name: l.Ifname, MAC: l.Address, Kind: l.Linkinfo.Kind, Master: l.Master, MTU: l.MTU, Addrs: byName[l.Ifname]}
		for _, f := range l.Flags {
			h.Up = h.Up || f == "UP"
		}
		sort.Strings(h.Addrs)
		out = append(out, h)
	}
	return out
}

type networkJSON struct {
	Name, Driver string
	Internal     bool
	IPAM         struct {
		Config []struct{ Subnet, Gateway string }
	}
	Containers map[string]struct{ Name, MacAddress, IPv4Address, IPv6Address string }
	Options    map[string]string
}

func inspectNetworks(t *testing.T, s *sandbox.Sandbox, names ...string) []networkJSON {
	t.Helper()
	var nets []networkJSON
	if len(names) == 0 {
		return nil
	}
	out := s.MustCtnet(append([]string{"network", "inspect"}, names...)...)
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		t.Fatalf("network inspect: %v\n%s", err, out)
	}
	return nets
}

// sortedNftElements sorts the elements of every set, after norm (if any):
// their listing order follows hashes of names that differ between sandboxes.
func sortedNftElements(nft string, norm func(string) string) string {
	var out []string
	lines := strings.Split(nft, "\n")
	for i := 0; i < len(lines); i++ {
		l := lines[i]
		k := strings.Index(l, "elements = {")
		if k < 0 {
			out = append(out, l)
			continue
		}
		body := l[k+len("elements = {"):]
		for !strings.Contains(body, "}") && i+1 < len(lines) {
			i++
			body += " " + lines[i]
		}
		body = body[:strings.LastIndex(body, "}")]
		var elems []string
		for _, e := range strings.Split(body, ",") {
			if e = strings.TrimSpace(e); e != "" {
				elems = append(elems, e)
			}
		}
		if norm != nil {
			for j := range elems {
				elems[j] = norm(elems[j])
			}
		}
		sort.Strings(elems)
		out = append(out, l[:k]+"elements = { "+strings.Join(elems, ", ")+" }")
	}
	return strings.Join(out, "\n")
}

// lineDiff shows the lines of got that want lacks (+) and the reverse (-).
func lineDiff(want, got string) string {
	count := map[string]int{}
	for _, l := range strings.Split(want, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(got, "\n") {
		count[l]--
	}
	var out []string
	for l, n := range count {
		for ; n > 0; n-- {
			out = append(out, "- "+l)
		}
		for ; n < 0; n++ {
			out = append(out, "+ "+l)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i][2:] < out[j][2:] })
	return strings.Join(out, "\n")
}

func diffCount(a, b string) int {
	if d := lineDiff(a, b); d != "" {
		return strings.Count(d, "\n") + 1
	}
	return 0
}

// removeContainersAtEnd removes the sandbox's containers before its
// namespaces go: their processes do not die with the sandbox.
func removeContainersAtEnd(t *testing.T, s *sandbox.Sandbox) {
	t.Cleanup(func() {
		if ids := strings.Fields(mustOut(s.Ctnet("ps", "-aq"))); len(ids) > 0 {
			s.Ctnet(append([]string{"rm", "-f"}, ids...)...)
		}
	})
}

// waitPortsSettled waits until every network's bridge has as many ports as
// the network has endpoints: veths of dropped namespaces are reclaimed by the
// kernel in the background, and reconcile would report them meanwhile.
func waitPortsSettled(t *testing.T, s *sandbox.Sandbox) {
	t.Helper()
	names := strings.Fields(s.MustCtnet("network", "ls", "--format", "{{.Name}}"))
	want := map[string]int{}
	for _, n := range inspectNetworks(t, s, names...) {
		if br := n.Options["com.docker.network.bridge.name"]; br != "" {
			want[br] = len(n.Containers)
		}
	}
	waitFor(t, func() bool {
		got := map[string]int{}
		for _, l := range hostLinks(t, s.Host) {
			if l.Kind == "veth" && l.Master != "" {
				got[l.Master]++
			}
		}
		for br, n := range want {
			if got[br] != n {
				return false
			}
		}
		return true
	}, "bridge ports to match the endpoints")
}

func mustOut(o, _ string, _ error) string { return o }

// TestRebootRecreatesNetworks simulates a reboot: a new sandbox (no links, no
// namespaces, an empty run root) with a copy of the persistent root of one
// that had networks, attached namespaces and running containers.
func TestRebootRecreatesNetworks(t *testing.T) {
	t.Parallel()
	a := sandbox.New(t)
	removeContainersAtEnd(t, a)
	withBusybox(t, a)
	a.MustCtnet("network", "create", "web")
	a.MustCtnet("network", "create", "--subnet", "10.62.0.0/24", "--internal", "priv")
	a.MustCtnet("network", "create", "--subnet", "10.63.0.0/24", "-o", "com.docker.network.bridge.name=crmtu0", "-o", "com.docker.network.driver.mtu=1280", "small")
	for _, n := range []string{"bridge", "web", "priv", "small"} {
		a.MustCtnet("network", "connect", n, "--netns", a.Netns().NetPath())
	}
	a.MustCtnet("run", "-d", "--name", "one", "busybox", "sleep", "600")
	a.MustCtnet("run", "-d", "--name", "two", "--network", "web", "busybox", "sleep", "600")
	a.MustCtnet("run", "-d", "--name", "three", "--network", "priv", "busybox", "sleep", "600")
	wantBridges := bridgesOf(t, a.Host)
	wantNft := sortedNftElements(a.Host.MustRun("nft", "list", "table", "inet", "ctnet"), nil)
	if len(wantBridges) != 4 {
		t.Fatalf("before the reboot: bridges %v", wantBridges)
	}

	b := sandbox.New(t)
	removeContainersAtEnd(t, b)
	if out, err := exec.Command("cp", "-a", a.Root, b.Root).CombinedOutput(); err != nil {
		t.Fatalf("copy the root: %v\n%s", err, out)
	}
	o, e, err := b.Ctnet("network", "ls")
	if err != nil {
		t.Fatalf("first command after the reboot: %v\n%s", err, e)
	}
	t.Logf("network ls after the reboot:\n%s%s", o, e)
	for _, n := range []string{"bridge", "web", "priv", "small"} {
		if !strings.Contains(o, " "+n+" ") {
			t.Errorf("network ls lacks %s:\n%s", n, o)
		}
	}
	if got := bridgesOf(t, b.Host); strings.Join(got, "\n") != strings.Join(wantBridges, "\n") {
		t.Errorf("bridges after the reboot:\n%s\nbefore:\n%s", strings.Join(got, "\n"), strings.Join(wantBridges, "\n"))
	}
	if got := sortedNftElements(b.Host.MustRun("nft", "list", "table", "inet", "ctnet"), nil); got != wantNft {
		t.Errorf("firewall after the reboot:\n%s\nbefore:\n%s", lineDiff(wantNft, got), "")
	}
	for _, l := range hostLinks(t, b.Host) {
		if l.Kind == "veth" && l.Name != "eth0" {
			t.Errorf("veth %s after the reboot", l.Name)
		}
	}
	if ps := b.MustCtnet("ps", "-aq"); ps != "" {
		t.Errorf("containers after the reboot:\n%s", ps)
	}
	for _, n := range inspectNetworks(t, b, "bridge", "web", "priv", "small") {
		if len(n.Containers) != 0 {
			t.Errorf("network %s lists endpoints after the reboot: %+v", n.Name, n.Containers)
		}
	}
	// Containers' writable layers are on disk, under the root: the first
	// reconcile removes those of the containers the reboot ended.
	o, e, err = b.Ctnet("system", "reconcile")
	if err != nil || e != "" || strings.Count(o, "removed the bundle of container ") != 3 || strings.Count(o, "\n") != 3 {
		t.Errorf("reconcile after the reboot: err=%v, printed:\n%s%s\nwant the bundles of one, two and three removed", err, o, e)
	}
	if o, e, err := b.Ctnet("system", "reconcile"); err != nil || o+e != "" {
		t.Errorf("second reconcile after the reboot: err=%v, printed:\n%s%s", err, o, e)
	}
	if left := b.Host.MustRun("find", filepath.Join(b.Root, "containers"), "-mindepth", "1", "-maxdepth", "1"); left != "" {
		t.Errorf("writable layers left on disk after the reboot and reconcile:\n%s", left)
	}
	assertClean(t, b, "ctnet0")

	// Addresses start over.
	b.MustCtnet("run", "-d", "--name", "again", "busybox", "sleep", "600")
	if ip := strings.TrimSpace(b.MustCtnet("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "again")); ip != "172.17.0.2" {
		t.Errorf("first container after the reboot got %s, want 172.17.0.2", ip)
	} else if err := b.Host.Ping(ip); err != nil {
		t.Error(err)
	}
	if out := b.MustCtnet("run", "--rm", "--network", "web", "busybox", "ip", "-o", "-4", "addr", "show", "eth0"); !strings.Contains(out, "inet 172.18.0.2/16") {
		t.Errorf("first container on web after the reboot: %s", out)
	}
	if out := b.MustCtnet("run", "--rm", "--network", "small", "busybox", "ip", "-o", "link", "show", "eth0"); !strings.Contains(out, "mtu 1280") {
		t.Errorf("container on small after the reboot: %s", out)
	}
	b.MustCtnet("rm", "-f", "again")
}

// bridgesOf describes every bridge of a namespace: name, MTU, state, addresses.
func bridgesOf(t *testing.T, ns *sandbox.NS) []string {
	t.Helper()
	var out []string
	for _, l := range hostLinks(t, ns) {
		if l.Kind == "bridge" {
			out = append(out, fmt.Sprintf("%s mtu=%d up=%v %v", l.Name, l.MTU, l.Up, l.Addrs))
		}
	}
	sort.Strings(out)
	return out
}
