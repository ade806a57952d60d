package e2e

import (
	"encoding/json"
	"image/png"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// ipLinkName is how `ip -o link` names ifname in ns: "eth0@if7" and its index.
func ipLinkName(t *testing.T, ns *sandbox.NS, ifname string) (name, index string) {
	t.Helper()
	out := ns.MustRun("ip", "-o", "link", "show", "dev", ifname)
	m := regexp.MustCompile(`^(\d+): ([^:]+):`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("ip -o link show dev %s: %q", ifname, out)
	}
	return m[2], m[1]
}

func TestTopology(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	// Looking changes nothing, not even on a host ctnet never set up.
	s.MustCtnet("topology")
	if out, err := s.Host.Run("ip", "link", "show", "ctnet0"); err == nil {
		t.Errorf("topology made the default network's bridge:\n%s", out)
	}
	if out := s.Host.MustRun("nft", "list", "ruleset"); strings.Contains(out, "ctnet") {
		t.Errorf("topology made ctnet's tables:\n%s", out)
	}

	serve(t, s, "web", "hello", "-p", "8080:80", "-p", "127.0.0.1:8081:80")
	s.MustCtnet("run", "-d", "--name", "db", "host", "sleep", "600")
	s.MustCtnet("network", "create", "--subnet", "10.10.0.0/24", "app")
	s.MustCtnet("network", "create", "--internal", "--subnet", "10.20.0.0/24", "-o", "com.docker.network.bridge.enable_icc=false", "backend")
	app, back := s.Netns(), s.Netns()
	s.MustCtnet("network", "connect", "app", "--netns", app.NetPath())
	s.MustCtnet("network", "connect", "backend", "--netns", back.NetPath())
	// Someone else's bridge, and a veth on ctnet0 that ctnet did not make.
	for _, c := range [][]string{
		{"ip", "link", "add", "docker0", "type", "bridge"}, {"ip", "addr", "add", "172.31.255.1/24", "dev", "docker0"},
		{"ip", "link", "set", "docker0", "up"},
		{"ip", "link", "add", "vethdeadbee", "type", "veth", "peer", "name", "vethpeer0"},
		{"ip", "link", "set", "vethdeadbee", "master", "ctnet0"},
	} {
		s.Host.MustRun(c[0], c[1:]...)
	}
	// A published port deleted behind ctnet's back: only the kernel knows.
	s.Host.MustRun("nft", "delete", "element", "inet", "ctnet", "ports4_any", "{ tcp . 8080 }")

	before := kernelState(t, s)
	out := s.MustCtnet("topology")
	if after := kernelState(t, s); after != before {
		t.Errorf("topology changed the kernel:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	for i, l := range strings.Split(out, "\n") {
		if n := utf8.RuneCountInString(l); n > 100 {
			t.Errorf("line %d is %d columns wide: %q", i+1, n, l)
		}
	}
	// web publishes on [::] too: IPv6 clients reach its address in the
	// default network's private /64.
	private6 := netip.MustParsePrefix(strings.TrimSpace(s.MustCtnet("network", "inspect", "--format",
		`{{index .Options "ctnet.bridge.published_ipv6_subnet"}}`, "bridge")))
	web6 := private6.Addr().As16()
	web6[12], web6[13], web6[14], web6[15] = 172, 17, 0, 2
	want := []string{
		"DNATed into " + private6.String(), private6.Addr().Next().String() + "/64",
		"uplink eth0", sandbox.HostAddr + "/24", "mtu 1400", "via " + sandbox.UpstreamAddr,
		`network "bridge" (bridge) 172.17.0.0/16`, "bridge ctnet0", "172.17.0.1/16",
		`network "app" (bridge) 10.10.0.0/24`, "10.10.0.1/24", "internal: no way out", "icc=false: ports isolated",
		"masquerade to the outside", "isolated from other networks",
		`in container "web"`, `in container "db"`, "in namespace " + app.NetPath(), "in namespace " + back.NetPath(),
		"172.17.0.2/16 " + netip.PrefixFrom(netip.AddrFrom16(web6), 64).String() + " 02:42:ac:11:00:02 via 172.17.0.1",
		"10.20.0.2/24", "port: isolated",
		"ports 0.0.0.0:8080->80/tcp [::]:8080->80/tcp 127.0.0.1:8081->80/tcp",
		"foreign bridge docker0", "172.31.255.1/24", "not ctnet's",
		"vethdeadbee on ctnet0: no endpoint in the store owns it",
		"map ports4_any: tcp *:8080 -> 172.17.0.2:80 is missing",
	}
	// Each pair as ip link shows it, from both ends.
	var atts []struct{ Name, NetNS, IfName, HostIf string }
	view := s.MustCtnet("topology", "--format", "json")
	var topo struct {
		Networks []struct {
			Name      string
			Endpoints []struct {
				HostIf string `json:"host_if"`
				NetNS  string `json:"netns"`
				IfName string `json:"ifname"`
			}
		}
	}
	if err := json.Unmarshal([]byte(view), &topo); err != nil {
		t.Fatalf("topology --format json: %v\n%s", err, view)
	}
	for _, n := range topo.Networks {
		for _, e := range n.Endpoints {
			if e.NetNS != "" {
				atts = append(atts, struct{ Name, NetNS, IfName, HostIf string }{n.Name, e.NetNS, e.IfName, e.HostIf})
			}
		}
	}
	if len(atts) != 4 {
		t.Fatalf("topology --format json has %d endpoints, want 4:\n%s", len(atts), view)
	}
	for _, a := range atts {
		hostName, hostIdx := ipLinkName(t, s.Host, a.HostIf)
		out, err := s.Host.Command("nsenter", "--net="+a.NetNS, "ip", "-o", "link", "show", "dev", a.IfName).CombinedOutput()
		m := regexp.MustCompile(`^(\d+): ([^:]+):`).FindStringSubmatch(string(out))
		if err != nil || m == nil {
			t.Fatalf("ip link inside %s: %v %s", a.NetNS, err, out)
		}
		want = append(want, hostName+" (#"+hostIdx+") <-> "+m[2]+" (#"+m[1]+")")
	}
	for _, w := range want {
		if !strings.Contains(out, w) {
			t.Errorf("topology lacks %q:\n%s", w, out)
		}
	}
	// Repaired, the drift is gone: the picture is the kernel's, not the store's.
	s.MustCtnet("system", "reconcile")
	out = s.MustCtnet("topology")
	if strings.Contains(out, "ports4_any") || strings.Contains(out, "vethdeadbee") {
		t.Errorf("drift still shown after reconcile:\n%s", out)
	}
	s.Host.MustRun("ip", "link", "add", "vethdeadbee", "type", "veth", "peer", "name", "vethpeer0")
	s.Host.MustRun("ip", "link", "set", "vethdeadbee", "master", "ctnet0")

	// Only some networks.
	if out := s.MustCtnet("topology", "app"); strings.Contains(out, "ctnet0") || !strings.Contains(out, `network "app"`) {
		t.Errorf("topology app:\n%s", out)
	}
	if _, e, err := s.Ctnet("topology", "nosuch"); err == nil || !strings.Contains(e, `No such network: nosuch`) {
		t.Errorf("topology nosuch: %v %s", err, e)
	}
	if _, e, err := s.Ctnet("topology", "--format", "png"); err == nil || !strings.Contains(e, "--format") {
		t.Errorf("--format png: %v %s", err, e)
	}
	dot := s.MustCtnet("topology", "--format", "dot")
	if !strings.HasPrefix(dot, "digraph ctnet {") || !strings.Contains(dot, "cluster_host") {
		t.Errorf("dot:\n%.300s", dot)
	}
	svg := s.MustCtnet("topology", "--format", "svg")
	if !strings.Contains(svg, "<svg") || !strings.Contains(svg, "ctnet0") {
		t.Errorf("svg:\n%.300s", svg)
	}

	// The page, in a browser: one file, nothing fetched.
	dir := t.TempDir()
	page := filepath.Join(dir, "topology.html")
	if err := os.WriteFile(page, []byte(s.MustCtnet("topology", "--format", "html")), 0o644); err != nil {
		t.Fatal(err)
	}
	dom := browse(t, s, page, "--dump-dom")
	for _, w := range []string{"bridge ctnet0", "172.17.0.1/16", "10.10.0.1/24", "veth pair", `container "web"`,
		"172.17.0.2/16", "02:42:ac:11:00:02", "docker0 (foreign)", "masquerade", "0.0.0.0:8080-&gt;80/tcp", "vethdeadbee",
		sandbox.HostAddr + "/24"} {
		if !strings.Contains(dom, w) {
			t.Errorf("the page as the browser has it lacks %q", w)
		}
	}
	shot := filepath.Join(dir, "topology.png")
	browse(t, s, page, "--screenshot="+shot, "--window-size=1400,1000")
	checkPicture(t, shot)
	if os.Getenv("CTNET_UPDATE_DOCS") != "" {
		b, _ := os.ReadFile(shot)
		if err := os.WriteFile("../docs/topology.png", b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// kernelState is what topology must not change.
func kernelState(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	return s.Host.MustRun("ip", "-o", "link") + s.Host.MustRun("bridge", "-d", "link") + s.Host.MustRun("ip", "addr") + s.Host.MustRun("ip", "route") +
		s.Host.MustRun("nft", "list", "ruleset")
}

// browse opens page in headless Chromium inside a namespace of its own with
// nothing but lo: whatever it tried, no packet could leave.
func browse(t *testing.T, s *sandbox.Sandbox, page string, args ...string) string {
	t.Helper()
	if _, err := exec.LookPath("chromium"); err != nil {
		t.Skip("chromium is not installed (scripts/deps.sh installs it)")
	}
	ns := s.Netns()
	base := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir()}
	cmd := ns.Command("chromium", append(append(base, args...), "file://"+page)...)
	cmd.Env = append(os.Environ(), "HOME="+t.TempDir())
	var out strings.Builder
	cmd.Stdout = &out
	var errOut strings.Builder
	cmd.Stderr = &errOut
	if err := cmd.Run(); err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, errOut.String())
	}
	return out.String()
}

// checkPicture checks that a screenshot shows something: its size, and ink
// of several colours on a good part of it.
func checkPicture(t *testing.T, path string) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		t.Fatalf("screenshot: %v", err)
	}
	b := img.Bounds()
	if b.Dx() < 1000 || b.Dy() < 700 {
		t.Errorf("screenshot is %dx%d", b.Dx(), b.Dy())
	}
	colours := map[[3]uint32]bool{}
	ink := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			colours[[3]uint32{r >> 12, g >> 12, bl >> 12}] = true
			if r < 0xf000 || g < 0xf000 || bl < 0xf000 {
				ink++
			}
		}
	}
	if total := b.Dx() * b.Dy() / 4; ink < total/10 || len(colours) < 20 {
		t.Errorf("screenshot looks empty: %d of %d sampled pixels inked, %d colours", ink, total, len(colours))
	}
}
