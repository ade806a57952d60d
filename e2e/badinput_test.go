package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/netx"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// snapshot is what a bad command must not change: links, addresses, routes,
// the firewall table, ctnet's view of its networks, containers and images,
// and the files of both state directories. Times that move on their own
// ("Up 3 seconds") are left out of the formats.
func snapshot(t *testing.T, s *sandbox.Sandbox) string {
	t.Helper()
	var b strings.Builder
	section := func(title, out string) { b.WriteString("## " + title + "\n" + out) }
	section("links", s.Host.MustRun("ip", "-o", "link"))
	// IPv6 duplicate address detection on a new bridge ends on its own
	section("addresses", strings.ReplaceAll(s.Host.MustRun("ip", "-o", "addr"), " tentative", ""))
	section("routes", s.Host.MustRun("ip", "-o", "route"))
	section("routes6", s.Host.MustRun("ip", "-o", "-6", "route"))
	section("nft", s.Host.MustRun("nft", "list", "table", "inet", "ctnet"))
	nets := strings.Fields(s.MustCtnet("network", "ls", "--format", "{{.Name}}"))
	section("networks", s.MustCtnet(append([]string{"network", "inspect"}, nets...)...))
	section("containers", s.MustCtnet("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.Names}} {{.Image}} {{.State}} {{.Networks}} {{.Ports}}"))
	section("images", s.MustCtnet("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}} {{.Size}}"))
	// the run root is a tmpfs seen only inside the sandbox host
	section("files", s.Host.MustRun("find", s.Root, s.RunRoot))
	return b.String()
}

type badCase struct {
	args []string
	want string // the bad value (or the reason) the one-line error must name
}

// checkBad runs each case and reports every one that succeeds or whose stderr
// is not exactly one line "Error: …" naming want.
func checkBad(t *testing.T, s *sandbox.Sandbox, cases []badCase) {
	t.Helper()
	for _, c := range cases {
		o, e, err := s.Ctnet(c.args...)
		cmd := "ctnet " + strings.Join(c.args, " ")
		if err == nil {
			t.Errorf("%s: succeeded, want an error\nstdout: %s\nstderr: %s", cmd, o, e)
			continue
		}
		if !strings.HasPrefix(e, "Error: ") || !strings.HasSuffix(e, "\n") || strings.Count(e, "\n") != 1 || !strings.Contains(e, c.want) {
			t.Errorf("%s:\nstderr: %q\nwant one line \"Error: …\" naming %q", cmd, e, c.want)
		}
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	// A route on the host that a new network must not overlap.
	s.Host.MustRun("ip", "route", "add", "10.99.0.0/16", "via", sandbox.UpstreamAddr)
	s.MustCtnet("network", "create", "--subnet", "10.10.0.0/24", "web")
	used := s.Netns()
	s.MustCtnet("network", "connect", "web", "--netns", used.NetPath(), "--ip", "10.10.0.9")
	// A network with one address, taken.
	s.MustCtnet("network", "create", "--subnet", "10.60.0.0/30", "tiny")
	s.MustCtnet("network", "connect", "tiny", "--netns", used.NetPath())
	// A running container with a published port, on the default network.
	s.MustCtnet("run", "-d", "--name", "one", "-p", "8080:80", "busybox", "sleep", "600")
	other := s.Netns()
	notNS := filepath.Join(s.Dir, "not-a-namespace")
	garbage := filepath.Join(s.Dir, "garbage.tar")
	if err := os.WriteFile(notNS, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(garbage, []byte("this is not a tar archive, nor gzip\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notDir := filepath.Join(s.Dir, "no", "such", "dir")
	bb := "busybox"

	cases := []badCase{
		// network create
		{[]string{"network", "create", "--subnet", "10.1.0.0/33", "x"}, "10.1.0.0/33"},
		{[]string{"network", "create", "--subnet", "banana", "x"}, "banana"},
		{[]string{"network", "create", "--subnet", "10.1.0.0/24", "--gateway", "10.2.0.1", "x"}, "10.2.0.1"},
		{[]string{"network", "create", "--subnet", "10.1.0.0/24", "--gateway", "banana", "x"}, "banana"},
		{[]string{"network", "create", "--gateway", "10.1.0.1", "x"}, "--gateway"},
		{[]string{"network", "create", "--subnet", "10.10.0.0/16", "x"}, `overlaps network "web"`},
		{[]string{"network", "create", "--subnet", "10.99.5.0/24", "x"}, "route or address on the host"},
		{[]string{"network", "create", "--subnet", "203.0.113.128/25", "x"}, "203.0.113.128/25"},
		{[]string{"network", "create", "--subnet", "10.50.0.0/24", "--ip-range", "10.51.0.0/25", "x"}, "10.51.0.0/25"},
		{[]string{"network", "create", "--subnet", "10.50.0.0/24", "--ip-range", "banana", "x"}, "banana"},
		{[]string{"network", "create", "--ip-range", "10.50.0.0/25", "x"}, "--ip-range"},
		{[]string{"network", "create", "--subnet", "10.50.0.0/24", "--aux-address", "a=10.60.0.1", "x"}, "10.60.0.1"},
		{[]string{"network", "create", "--subnet", "10.50.0.0/24", "--aux-address", "noequals", "x"}, "noequals"},
		{[]string{"network", "create", "--ipv6", "--subnet", "10.50.0.0/24", "x"}, "IPv6"},
		{[]string{"network", "create", "web"}, "already exists"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.name=abcdefghijklmnop", "x"}, "abcdefghijklmnop"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.name=eth0", "x"}, "eth0"},
		{[]string{"network", "create", "-o", "com.docker.network.driver.mtu=abc", "x"}, "abc"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.enable_icc=maybe", "x"}, "maybe"},
		{[]string{"network", "create", "-o", "noequals", "x"}, "noequals"},
		{[]string{"network", "create", "--label", "=v", "x"}, "=v"},
		{[]string{"network", "create", "-o", "com.example.unknown=1", "x"}, "com.example.unknown"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.name=bad/name", "x"}, "bad/name"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.name=with space", "x"}, "with space"},
		{[]string{"network", "create", "-o", "com.docker.network.bridge.name=ctnet0", "x"}, "ctnet0"},
		{[]string{"network", "create", "--subnet", "10.50.0.0/31", "x"}, "10.50.0.0/31"},
		{[]string{"network", "create", "--subnet", "0.0.0.0/0", "x"}, "0.0.0.0/0"},
		{[]string{"network", "create", "--subnet", "fd00:99::/64", "x"}, "--ipv6"},
		{[]string{"network", "create", "--driver", "overlay9", "x"}, "overlay9"},
		{[]string{"network", "create", "bad/name"}, "bad/name"},
		{[]string{"network", "create", "host"}, "reserved"},
		// subnets that cannot hold container addresses
		{[]string{"network", "create", "--subnet", "224.0.0.0/24", "x"}, "multicast"},
		{[]string{"network", "create", "--subnet", "255.255.255.0/24", "x"}, "255.255.255.255"},
		{[]string{"network", "create", "--subnet", "0.0.0.0/8", "x"}, "this network"},
		{[]string{"network", "create", "--subnet", "127.1.0.0/16", "x"}, "loopback"},
		{[]string{"network", "create", "--subnet", "169.254.0.0/16", "x"}, "link-local"},
		{[]string{"network", "create", "--ipv6", "--subnet", "ff05::/64", "x"}, "multicast"},
		{[]string{"network", "create", "--ipv6", "--subnet", "fe80::/64", "x"}, "link-local"},
		{[]string{"network", "create", "--ipv6", "--subnet", "::ffff:10.0.0.0/120", "x"}, "IPv4-mapped"},
		// network rm, inspect, ls, prune
		{[]string{"network", "rm", "web"}, "has active endpoints"},
		{[]string{"network", "rm", "bridge"}, "cannot be removed"},
		{[]string{"network", "rm", "nosuch"}, "nosuch"},
		{[]string{"network", "inspect", "nosuch"}, "nosuch"},
		{[]string{"network", "inspect", "-f", "{{.Nope}}", "web"}, "Nope"},
		{[]string{"network", "ls", "--filter", "colour=red"}, "colour"},
		{[]string{"network", "ls", "--filter", "type=weird"}, "weird"},
		{[]string{"network", "ls", "--filter", "noequals"}, "noequals"},
		{[]string{"network", "ls", "--format", "{{.Name"}, "--format"},
		{[]string{"network", "ls", "--bogus"}, "--bogus"},
		{[]string{"network", "prune", "-f", "--filter", "colour=red"}, "colour"},
		// network connect, disconnect
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.20.0.5"}, "10.20.0.5"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "banana"}, "banana"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.9"}, "already in use"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.0"}, "10.10.0.0"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.1"}, "gateway"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ip", "10.10.0.255"}, "broadcast"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--mac-address", "zz:zz"}, "zz:zz"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ifname", "averyveryverylongname"}, "averyveryverylongname"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ifname", "bad/name"}, "bad/name"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--ifname", "lo"}, "lo"},
		{[]string{"network", "connect", "web", "--netns", used.NetPath()}, "already attached"},
		{[]string{"network", "connect", "tiny", "--netns", other.NetPath()}, "tiny"},
		{[]string{"network", "connect", "web", "--netns", notNS}, "not a network namespace"},
		// the host's own namespace would lose its routes to the network
		{[]string{"network", "connect", "web", "--netns", "/proc/self/ns/net"}, "host's own network namespace"},
		{[]string{"network", "connect", "web", "--netns", s.Host.NetPath()}, "host's own network namespace"},
		// names that would change /etc/hosts or the resolver's records
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--alias", "a b"}, `"a b"`},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--alias", "x\n10.0.0.1 evil"}, "is not a host name"},
		{[]string{"network", "connect", "web", "--netns", other.NetPath(), "--alias", "x#y"}, `"x#y"`},
		// MACs in use: another endpoint's, the bridge's
		{[]string{"network", "connect", "bridge", "--netns", other.NetPath(), "--mac-address", "02:42:ac:11:00:02"}, `container "one"`},
		{[]string{"network", "connect", "bridge", "--netns", other.NetPath(), "--mac-address", netx.BridgeMAC("ctnet0").String()}, "MAC of bridge ctnet0"},
		{[]string{"network", "connect", "web", "--netns", "/nonexistent/ns"}, "/nonexistent/ns"},
		{[]string{"network", "connect", "nosuch", "--netns", other.NetPath()}, "nosuch"},
		{[]string{"network", "connect", "web"}, "--netns"},
		{[]string{"network", "connect", "web", "nosuchctr"}, "No such container: nosuchctr"},
		// Docker's words, which scripts grep
		{[]string{"network", "connect", "host", "one"}, "container cannot be disconnected from host network or connected to host network"},
		{[]string{"network", "connect", "none", "one"}, "container cannot be connected to multiple networks with one of the networks in private (none) mode"},
		{[]string{"network", "disconnect", "host", "one"}, "container cannot be disconnected from host network or connected to host network"},
		{[]string{"network", "connect", "host", "--netns", other.NetPath()}, "not a network to join"},
		{[]string{"network", "connect", "none", "--netns", other.NetPath()}, "not a network to join"},
		{[]string{"rm", "one"}, "You cannot remove a running container"},
		{[]string{"run", "--name", "one", bb, "true"}, `The container name "/one" is already in use by container`},
		{[]string{"network", "inspect", "nosuch2"}, "No such network: nosuch2"},
		{[]string{"inspect", "nosuch3"}, "No such container: nosuch3"},
		{[]string{"network", "disconnect", "web", "--netns", other.NetPath()}, "not connected"},
		{[]string{"network", "disconnect", "nosuch", "--netns", used.NetPath()}, "nosuch"},
		{[]string{"network", "disconnect", "web", "nosuchctr"}, "nosuchctr"},
		// run: published ports
		{[]string{"run", "--rm", "-p", "8081:0", bb, "true"}, "8081:0"},
		{[]string{"run", "--rm", "-p", "70000:80", bb, "true"}, "70000"},
		{[]string{"run", "--rm", "-p", "8091-8090:80-81", bb, "true"}, "8091-8090"},
		{[]string{"run", "--rm", "-p", "8081:80/sctpx", bb, "true"}, "sctpx"},
		{[]string{"run", "--rm", "-p", "::1:8081:80", bb, "true"}, "::1"},
		{[]string{"run", "--rm", "-p", "8080:80", bb, "true"}, "8080"}, // taken by one
		{[]string{"run", "--rm", "-p", "8081:80", "--network", "none", bb, "true"}, "none"},
		// run: images, networks, names, addresses
		{[]string{"run", "--rm", "nosuchimage", "true"}, "nosuchimage"},
		{[]string{"run", "--rm", "--network", "nosuchnet", bb, "true"}, "nosuchnet"},
		{[]string{"run", "--rm", "--network", "container:nosuch", bb, "true"}, "nosuch"},
		{[]string{"run", "--rm", "--ipc", "container:nosuch", bb, "true"}, "nosuch"},
		{[]string{"run", "-d", "--name", "one", bb, "true"}, "one"},
		{[]string{"run", "--rm", "--name", "bad/name", bb, "true"}, "bad/name"},
		{[]string{"run", "--rm", "--network", "web", "--ip", "10.20.0.5", bb, "true"}, "10.20.0.5"},
		{[]string{"run", "--rm", "--network", "web", "--ip", "10.10.0.9", bb, "true"}, "10.10.0.9"},
		{[]string{"run", "--rm", "--network", "web", "--mac-address", "zz", bb, "true"}, "zz"},
		{[]string{"run", "--rm", "--network", "tiny", bb, "true"}, "tiny"},
		{[]string{"run", "--rm", "--runtime", "nosuchruntime", bb, "true"}, "nosuchruntime"},
		// run: volumes, hosts, DNS
		{[]string{"run", "--rm", "-v", "relative:/mnt", bb, "true"}, "relative"},
		{[]string{"run", "--rm", "-v", notDir + ":/mnt", bb, "true"}, notDir},
		{[]string{"run", "--rm", "-v", s.Dir + ":/mnt:rx", bb, "true"}, "rx"},
		{[]string{"run", "--rm", "-v", s.Dir + ":mnt", bb, "true"}, "mnt"},
		{[]string{"run", "--rm", "--add-host", "nocolon", bb, "true"}, "nocolon"},
		{[]string{"run", "--rm", "--add-host", "h:banana", bb, "true"}, "banana"},
		{[]string{"run", "--rm", "--dns", "banana", bb, "true"}, "banana"},
		{[]string{"run", "--rm", "--hostname", "a b", bb, "true"}, "--hostname"},
		{[]string{"run", "--rm", "--hostname", "a\n127.0.0.1 evil", bb, "true"}, "--hostname"},
		{[]string{"run", "--rm", "--hostname", strings.Repeat("h", 64), bb, "true"}, "--hostname"},
		{[]string{"run", "--rm", "--add-host", "a b:10.0.0.1", bb, "true"}, "--add-host"},
		{[]string{"run", "--rm", "--add-host", "a\nb:10.0.0.1", bb, "true"}, "--add-host"},
		{[]string{"run", "--rm", "--network", "web", "--network-alias", "a\tb", bb, "true"}, "--network-alias"},
		{[]string{"run", "--rm", "--network", "web", "--network-alias", "", bb, "true"}, "--network-alias"},
		// other container commands
		{[]string{"exec", "nosuchctr", "true"}, "nosuchctr"},
		{[]string{"stop", "nosuchctr"}, "nosuchctr"},
		{[]string{"kill", "nosuchctr"}, "nosuchctr"},
		{[]string{"kill", "-s", "BADSIG", "one"}, "BADSIG"},
		{[]string{"rm", "nosuchctr"}, "nosuchctr"},
		{[]string{"rm", "nosuchctr", "nosuchctr2"}, "nosuchctr"},
		{[]string{"rm", "one"}, "one"}, // running: needs -f
		{[]string{"logs", "nosuchctr"}, "nosuchctr"},
		{[]string{"inspect", "nosuchctr"}, "nosuchctr"},
		{[]string{"port", "nosuchctr"}, "nosuchctr"},
		{[]string{"port", "one", "81/tcp"}, "81"},
		{[]string{"port", "one", "99999"}, "99999"},
		// images, bridges, the command line itself
		{[]string{"image", "load", "-i", garbage}, garbage},
		{[]string{"image", "load", "-i", notDir}, notDir},
		{[]string{"image", "import", garbage, "junk"}, garbage},
		{[]string{"rmi", "nosuchimage"}, "nosuchimage"},
		{[]string{"rmi", "host"}, "built in"},
		{[]string{"rmi", bb}, "one"}, // used by a container
		{[]string{"bridge", "show", "nosuch0"}, "nosuch0"},
		{[]string{"bridge", "show", "eth0"}, "eth0"},
		{[]string{"netwrk", "ls"}, "netwrk"},
		// last: if it is wrongly accepted it kills one
		{[]string{"kill", "-s", "9abc", "one"}, "9abc"},
	}
	before := snapshot(t, s)
	checkBad(t, s, cases)
	t.Logf("%d bad inputs tried", len(cases))
	if after := snapshot(t, s); after != before {
		t.Errorf("bad input changed the host or the store:\n%s", diffLines(before, after))
	}
}

// diffLines lists the lines only in a (-) or only in b (+).
func diffLines(a, b string) string {
	count := map[string]int{}
	for _, l := range strings.Split(a, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(b, "\n") {
		count[l]--
	}
	var out strings.Builder
	for _, l := range strings.Split(a, "\n") {
		if count[l] > 0 {
			out.WriteString("- " + l + "\n")
			count[l]--
		}
	}
	for _, l := range strings.Split(b, "\n") {
		if count[l] < 0 {
			out.WriteString("+ " + l + "\n")
			count[l]++
		}
	}
	return out.String()
}

func TestNotRoot(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "--subnet", "10.10.0.0/24", "web")
	before := snapshot(t, s)
	for _, args := range [][]string{
		{"network", "create", "x"},
		{"network", "rm", "web"},
		{"network", "ls"},
		{"run", "--rm", "host", "true"},
		{"ps"},
		{"images"},
		{"system", "reconcile"},
	} {
		cmd := s.Host.Command("setpriv", append([]string{"--reuid=65534", "--regid=65534", "--clear-groups", sandbox.Binary(t),
			"--root", s.Root, "--run-root", s.RunRoot}, args...)...)
		var o, e strings.Builder
		cmd.Stdout, cmd.Stderr = &o, &e
		err := cmd.Run()
		if err == nil || !strings.HasPrefix(e.String(), "Error: ") || strings.Count(e.String(), "\n") != 1 || !strings.Contains(e.String(), "must run as root") {
			t.Errorf("as nobody, ctnet %s: err=%v\nstdout: %s\nstderr: %q", strings.Join(args, " "), err, o.String(), e.String())
		}
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("a command as nobody changed the host or the store:\n%s", diffLines(before, after))
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

// A bridge holds at most 1023 ports (BR_MAX_PORTS less port 0): the next endpoint is
// refused with the reason instead of the kernel's bare "exchange full", and
// nothing is left of it.
func TestBridgePortLimit(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "ls") // makes ctnet0
	var batch strings.Builder
	for i := range 1023 {
		fmt.Fprintf(&batch, "link add pad%d type veth peer name pad%dp\nlink set pad%d master ctnet0\n", i, i, i)
	}
	cmd := s.Host.Command("ip", "-batch", "-")
	cmd.Stdin = strings.NewReader(batch.String())
	out, err := cmd.CombinedOutput()
	if ports := strings.Count(s.Host.MustRun("ip", "-o", "link", "show", "master", "ctnet0"), "\n"); ports != 1023 {
		t.Fatalf("ctnet0 has %d ports after adding 1023 (%v): %s", ports, err, out)
	}
	ns := s.Netns()
	before := snapshot(t, s)
	_, e, err := s.Ctnet("network", "connect", "bridge", "--netns", ns.NetPath())
	if err == nil || strings.Count(e, "\n") != 1 || !strings.Contains(e, "as many ports as the kernel allows (1023)") {
		t.Errorf("the 1024th port: err=%v stderr %q", err, e)
	}
	if after := snapshot(t, s); after != before {
		t.Errorf("the refused attach changed the host:\n%s", lineDiff(before, after))
	}
}

// A state file cut short (a full disk) is named in a one-line error with
// what to do, instead of a crash; moving the runtime one away and
// reconciling cleans what it held.
func TestDamagedStateFile(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "web")
	ns := s.Netns()
	s.MustCtnet("network", "connect", "web", "--netns", ns.NetPath())
	db := filepath.Join(s.RunRoot, "ctnet.db")
	s.Host.MustRun("truncate", "-s", "8192", db)
	for _, args := range [][]string{{"network", "ls"}, {"network", "connect", "web", "--netns", s.Netns().NetPath()}, {"system", "reconcile"}} {
		_, e, err := s.Ctnet(args...)
		if err == nil || strings.Count(e, "\n") != 1 || !strings.Contains(e, db+" is damaged") || !strings.Contains(e, "move it away") {
			t.Errorf("ctnet %s on a damaged state file: err=%v stderr %q", strings.Join(args, " "), err, e)
		}
	}
	s.Host.MustRun("mv", db, db+".damaged")
	if out := s.MustCtnet("system", "reconcile"); !strings.Contains(out, "deleted veth") {
		t.Errorf("reconcile after moving the damaged file away:\n%s", out)
	}
	s.MustCtnet("network", "connect", "web", "--netns", ns.NetPath())
}

func TestNetworkOptionsOfTheServiceAndTheDriver(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "create", "-o", "ctnet.bridge.anti_spoofing=false", "-o", "ctnet.internal.dns_forward=true", "--internal", "open")
	opts := s.MustCtnet("network", "inspect", "-f", "{{json .Options}}", "open")
	for _, want := range []string{`"ctnet.bridge.anti_spoofing":"false"`, `"ctnet.internal.dns_forward":"true"`} {
		if !strings.Contains(opts, want) {
			t.Errorf("options %s lack %s", opts, want)
		}
	}
	checkBad(t, s, []badCase{
		{[]string{"network", "create", "-o", "ctnet.bridge.anti_spoofing=maybe", "x"}, "maybe"},
		{[]string{"network", "create", "-o", "ctnet.internal.dns_forward=maybe", "x"}, "maybe"},
		{[]string{"network", "create", "-o", "ctnet.nosuch=1", "x"}, "ctnet.nosuch"},
	})
}
