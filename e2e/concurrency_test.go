package e2e

import (
	"fmt"
	"math/rand"
	"net/netip"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"testing"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// atOnce runs f(0) … f(n-1) in goroutines released together.
func atOnce(n int, f func(i int)) {
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			f(i)
		}()
	}
	close(start)
	wg.Wait()
}

// TestConcurrentRuns starts N `ctnet run -d` processes at once on the default
// network: in a sandbox already in use, as the very first commands (each of
// them then finds the state new and reconciles), and with `system reconcile`
// running over and over meanwhile.
func TestConcurrentRuns(t *testing.T) {
	t.Parallel()
	n := 12
	if os.Getenv("CTNET_TEST_FULL") == "1" {
		n = 50
	}
	for _, v := range []struct {
		name               string
		warm, reconcileToo bool
	}{
		{"in-use", true, false},
		{"first-commands", false, false},
		{"with-reconcile", true, true},
	} {
		t.Run(v.name, func(t *testing.T) {
			t.Parallel()
			s := sandbox.New(t)
			removeContainersAtEnd(t, s)
			withBusybox(t, s) // touches no network state
			if v.warm {
				s.MustCtnet("network", "ls")
			}
			// Three reconcile loops, so that one is nearly always between
			// its look at the store and its look at the kernel.
			stop := make(chan struct{})
			var loops sync.WaitGroup
			var rounds int
			var mu sync.Mutex
			for l := 0; v.reconcileToo && l < 3; l++ {
				loops.Add(1)
				go func() {
					defer loops.Done()
					for {
						select {
						case <-stop:
							return
						default:
						}
						if o, e, err := s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
							t.Errorf("reconcile during the runs: err=%v, printed:\n%s%s", err, o, e)
						}
						mu.Lock()
						rounds++
						mu.Unlock()
					}
				}()
			}
			ids := make([]string, n)
			atOnce(n, func(i int) {
				o, e, err := s.Ctnet("run", "-d", "busybox", "sleep", "600")
				if err != nil {
					t.Errorf("run %d: %v\n%s", i, err, e)
					return
				}
				ids[i] = strings.TrimSpace(o)
			})
			close(stop)
			loops.Wait()
			if v.reconcileToo {
				t.Logf("%d reconciles ran during the runs", rounds)
			}
			var ok []string
			for _, id := range ids {
				if id != "" {
					ok = append(ok, id)
				}
			}
			if len(ok) != n {
				t.Fatalf("%d of %d runs succeeded", len(ok), n)
			}

			addrs := strings.Fields(s.MustCtnet(append([]string{"inspect", "-f", "{{.NetworkSettings.IPAddress}}"}, ok...)...))
			seen := map[string]bool{}
			for _, a := range addrs {
				seen[a] = true
			}
			if len(addrs) != n || len(seen) != n {
				t.Errorf("%d containers, addresses (%d distinct): %v", n, len(seen), addrs)
			}
			var unreachable []string
			for a := range seen {
				if err := s.Host.Ping(a); err != nil {
					unreachable = append(unreachable, a)
				}
			}
			if len(unreachable) > 0 {
				sort.Strings(unreachable)
				t.Errorf("%d of %d containers do not answer a ping from the host: %v", len(unreachable), len(seen), unreachable)
			}
			if c := strings.TrimSpace(s.MustCtnet("network", "inspect", "-f", "{{len .Containers}}", "bridge")); c != fmt.Sprint(n) {
				t.Errorf("bridge network lists %s endpoints, want %d", c, n)
			}
			if o, e, err := s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
				t.Errorf("reconcile after %d concurrent runs: err=%v, printed:\n%s%s", n, err, o, e)
			}

			atOnce(len(ok), func(i int) {
				if _, e, err := s.Ctnet("rm", "-f", ok[i]); err != nil {
					t.Errorf("rm -f %s: %v\n%s", ok[i][:12], err, e)
				}
			})
			if ps := s.MustCtnet("ps", "-aq"); ps != "" {
				t.Errorf("containers left after concurrent rm -f:\n%s", ps)
			}
			assertClean(t, s, "ctnet0")
		})
	}
}

// TestConcurrentCreateSameName: of 10 concurrent `network create same`, the
// very first commands of the instance, exactly one wins; the others say so
// and leave nothing behind.
func TestConcurrentCreateSameName(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	const n = 10
	outs, errs := make([]string, n), make([]error, n)
	atOnce(n, func(i int) {
		var e string
		outs[i], e, errs[i] = s.Ctnet("network", "create", "same")
		if errs[i] != nil {
			outs[i] = e
		}
	})
	won := 0
	for i := range outs {
		switch {
		case errs[i] == nil:
			won++
			if len(strings.TrimSpace(outs[i])) != 64 {
				t.Errorf("the winner printed %q, want the network id", outs[i])
			}
		case !strings.HasPrefix(outs[i], "Error: ") || !strings.Contains(outs[i], `network with name same already exists`) ||
			strings.Count(strings.TrimSpace(outs[i]), "\n") != 0:
			t.Errorf("a loser said %q, want one line `Error: network with name same already exists …`", outs[i])
		}
	}
	if won != 1 {
		t.Errorf("%d of %d concurrent creates succeeded, want exactly 1", won, n)
	}
	if ls := s.MustCtnet("network", "ls", "--format", "{{.Name}}"); ls != "bridge\nhost\nnone\nsame\n" {
		t.Errorf("network ls:\n%s", ls)
	}
	checkKernelMatchesStore(t, s, nil)
	if o, e, err := s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
		t.Errorf("reconcile: err=%v, printed:\n%s%s", err, o, e)
	}
}

// TestConcurrentMix runs workers that create and remove networks and connect
// and disconnect namespaces at random, all at once; the errors they may get
// are only the ones two users racing would expect, and in the end the
// kernel, the firewall and the store agree and reconcile finds nothing.
func TestConcurrentMix(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	s.MustCtnet("network", "ls")
	nss := []*sandbox.NS{s.Netns(), s.Netns(), s.Netns(), s.Netns()}
	create := map[string][]string{
		"m0": {"--subnet", "10.64.0.0/24"},
		"m1": nil, // a free subnet picked while others pick too
		"m2": nil,
		"m3": {"--subnet", "10.65.0.0/24", "--internal"},
	}
	nets := []string{"m0", "m1", "m2", "m3"}
	targets := append([]string{"bridge"}, nets...)
	expected := regexp.MustCompile(`already exists|No such network|has active endpoints|already attached|is not connected`)
	workers, rounds := 8, 12
	if os.Getenv("CTNET_TEST_FULL") == "1" {
		workers, rounds = 16, 40
	}
	var mu sync.Mutex
	tally := map[string]int{}
	atOnce(workers, func(w int) {
		rng := rand.New(rand.NewSource(int64(w)))
		for r := 0; r < rounds; r++ {
			var args []string
			ns := nss[rng.Intn(len(nss))].NetPath()
			switch k := rng.Intn(10); {
			case k < 2:
				name := nets[rng.Intn(len(nets))]
				args = append(append([]string{"network", "create"}, create[name]...), name)
			case k < 4:
				args = []string{"network", "rm", nets[rng.Intn(len(nets))]}
			case k < 7:
				args = []string{"network", "connect", targets[rng.Intn(len(targets))], "--netns", ns}
			default:
				args = []string{"network", "disconnect", targets[rng.Intn(len(targets))], "--netns", ns}
			}
			_, e, err := s.Ctnet(args...)
			outcome := "ok"
			if err != nil {
				outcome = "refused"
				if !expected.MatchString(e) || strings.Count(strings.TrimSpace(e), "\n") != 0 {
					t.Errorf("ctnet %s: %v\n%s", strings.Join(args, " "), err, e)
					outcome = "failed"
				}
			}
			mu.Lock()
			tally[args[1]+" "+outcome]++
			mu.Unlock()
		}
	})
	t.Logf("%d operations by %d workers: %v", workers*rounds, workers, tally)

	checkKernelMatchesStore(t, s, nss)
	if o, e, err := s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
		t.Errorf("reconcile after the mix: err=%v, printed:\n%s%s", err, o, e)
	}

	// Everything can still be taken down.
	for _, ns := range nss {
		for _, net := range targets {
			s.Ctnet("network", "disconnect", net, "--netns", ns.NetPath())
		}
	}
	for _, n := range nets {
		if _, e, err := s.Ctnet("network", "rm", n); err != nil && !strings.Contains(e, "No such network") {
			t.Errorf("network rm %s after the mix: %v\n%s", n, err, e)
		}
	}
	if o, e, err := s.Ctnet("system", "reconcile"); err != nil || o+e != "" {
		t.Errorf("reconcile after taking all down: err=%v, printed:\n%s%s", err, o, e)
	}
	checkKernelMatchesStore(t, s, nss)
	assertClean(t, s, "ctnet0")
}

// checkKernelMatchesStore compares what `network inspect` says with the
// kernel: one bridge per network with its gateways, nothing else bridged;
// the firewall's sets hold exactly those bridges and subnets; each bridge
// has one veth per endpoint; and each namespace in nss has exactly the
// interfaces, addresses and MACs its endpoints list.
func checkKernelMatchesStore(t *testing.T, s *sandbox.Sandbox, nss []*sandbox.NS) {
	t.Helper()
	waitPortsSettled(t, s)
	var names []string
	for _, n := range strings.Fields(s.MustCtnet("network", "ls", "--format", "{{.Name}}")) {
		if n != "host" && n != "none" {
			names = append(names, n)
		}
	}
	nets := inspectNetworks(t, s, names...)
	wantBridges, wantSubnets := []string{}, []string{}
	wantPorts := map[string]int{}
	wantNS := map[string][]string{}
	for _, n := range nets {
		br := n.Options["com.docker.network.bridge.name"]
		var gws []string
		for _, c := range n.IPAM.Config {
			bits := c.Subnet[strings.Index(c.Subnet, "/"):]
			gws = append(gws, c.Gateway+bits)
			wantSubnets = append(wantSubnets, fmt.Sprintf("%s . %q", c.Subnet, br))
		}
		if p6 := n.Options["ctnet.bridge.published_ipv6_subnet"]; p6 != "" {
			// the private /64 IPv6 clients of published ports are DNATed into
			pfx := netip.MustParsePrefix(p6)
			gws = append(gws, netip.PrefixFrom(pfx.Addr().Next(), pfx.Bits()).String())
		}
		sort.Strings(gws)
		wantBridges = append(wantBridges, fmt.Sprintf("%s %v", br, gws))
		wantPorts[br] = len(n.Containers)
		for _, ep := range n.Containers {
			wantNS[ep.Name] = append(wantNS[ep.Name], ep.IPv4Address+" "+ep.MacAddress)
		}
	}
	sort.Strings(wantBridges)
	var gotBridges []string
	gotPorts := map[string]int{}
	for _, l := range hostLinks(t, s.Host) {
		if l.Kind == "bridge" {
			gotBridges = append(gotBridges, fmt.Sprintf("%s %v", l.Name, l.Addrs))
		}
		if l.Kind == "veth" && l.Master != "" {
			gotPorts[l.Master]++
		}
	}
	sort.Strings(gotBridges)
	if strings.Join(gotBridges, "\n") != strings.Join(wantBridges, "\n") {
		t.Errorf("bridges in the kernel:\n%s\nnetworks in the store:\n%s", strings.Join(gotBridges, "\n"), strings.Join(wantBridges, "\n"))
	}
	for br, n := range wantPorts {
		if gotPorts[br] != n {
			t.Errorf("bridge %s has %d veths, its network %d endpoints", br, gotPorts[br], n)
		}
	}

	nft := s.Host.MustRun("nft", "list", "table", "inet", "ctnet")
	var bridgeNames []string
	for _, b := range wantBridges {
		bridgeNames = append(bridgeNames, fmt.Sprintf("%q", strings.Fields(b)[0]))
	}
	for set, want := range map[string][]string{"bridges": bridgeNames, "subnets4": wantSubnets} {
		got := nftSetElements(nft, set)
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("nft set %s: %v; the store has %v", set, got, want)
		}
	}

	for _, ns := range nss {
		var got []string
		for _, l := range hostLinks(t, ns) {
			if l.Name == "lo" {
				continue
			}
			for _, a := range l.Addrs {
				got = append(got, a+" "+l.MAC)
			}
			if len(l.Addrs) == 0 {
				got = append(got, "no address on "+l.Name)
			}
		}
		want := wantNS[ns.NetPath()]
		sort.Strings(got)
		sort.Strings(want)
		if strings.Join(got, ", ") != strings.Join(want, ", ") {
			t.Errorf("namespace %s has %v; its endpoints say %v", ns.NetPath(), got, want)
		}
	}
}

// nftSetElements returns the elements of one set of an `nft list table`.
func nftSetElements(nft, set string) []string {
	var out []string
	in := false
	for _, l := range strings.Split(sortedNftElements(nft, nil), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "set ") || strings.HasPrefix(l, "map "):
			in = l == "set "+set+" {"
		case in && strings.HasPrefix(l, "elements = {"):
			body := strings.TrimSuffix(strings.TrimPrefix(l, "elements = {"), "}")
			for _, e := range strings.Split(body, ",") {
				if e = strings.TrimSpace(e); e != "" {
					out = append(out, e)
				}
			}
		}
	}
	return out
}
