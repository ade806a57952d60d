package e2e

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/types"

	"github.com/ctnet/ctnet/internal/sandbox"
)

const (
	ctnetChain     = `{"type":"ctnet","network":"chain","subnet":"10.95.0.0/24","bridge":"ctchain0"}`
	bandwidthChain = `{"type":"bandwidth","capabilities":{"bandwidth":true}}`
	tuningChain    = `{"type":"tuning","sysctl":{"net.ipv4.conf.eth0.arp_announce":"2"}}`
)

// TestCNIChain runs ctnet first in a chain of Debian's reference plugins
// (spec 1.0.0, theirs): portmap publishes a port from ctnet's prevResult,
// bandwidth shapes ctnet's host veth, tuning sets a sysctl in the namespace;
// CHECK goes down the chain, DEL takes everything back.
func TestCNIChain(t *testing.T) {
	for _, p := range []string{"portmap", "bandwidth", "tuning"} {
		if !fileExists(filepath.Join(cniPluginDir, p)) {
			t.Skipf("%s/%s is missing: scripts/deps.sh installs containernetworking-plugins", cniPluginDir, p)
		}
	}
	e := newCNIEnv(t)
	s := e.s
	ctx := context.Background()
	l := e.list("1.0.0", "chain", ctnetChain, `{"type":"portmap","capabilities":{"portMappings":true},"snat":true}`, bandwidthChain, tuningChain)
	ns := s.Netns()
	rt := rtConf("chained", ns)
	rt.CapabilityArgs = map[string]any{
		"portMappings": []map[string]any{{"hostPort": 9090, "containerPort": 80, "protocol": "tcp"}},
		"bandwidth":    map[string]any{"ingressRate": 8000000, "ingressBurst": 80000, "egressRate": 8000000, "egressBurst": 80000},
	}
	r := e.add(l, rt)
	if len(r.Interfaces) < 3 || r.Interfaces[2].Sandbox != ns.NetPath() {
		t.Fatalf("the chain's result lost ctnet's interfaces: %v", r.Interfaces)
	}
	hostIf := r.Interfaces[1].Name
	web := ns.Command("socat", "TCP-LISTEN:80,fork,reuseaddr", "SYSTEM:echo hello through portmap")
	if err := web.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { web.Process.Kill(); web.Wait() }()
	waitFor(t, func() bool {
		return strings.Contains(httpGet(s.Upstream, sandbox.HostAddr, "9090"), "hello through portmap")
	}, "portmap's port 9090 to answer the upstream")
	if q := s.Host.MustRun("tc", "qdisc", "show", "dev", hostIf); !strings.Contains(q, "tbf") {
		t.Errorf("bandwidth put no tbf qdisc on ctnet's veth %s: %s", hostIf, q)
	}
	if v := strings.TrimSpace(ns.MustRun("sysctl", "-n", "net.ipv4.conf.eth0.arp_announce")); v != "2" {
		t.Errorf("tuning: arp_announce is %s in the namespace", v)
	}
	// CHECK down the chain but portmap, whose CHECK (1.1.1) looks for
	// IPv6 rules it never made for an IPv4-only result
	// (containernetworking/plugins#819).
	noPortmap := e.list("1.0.0", "chain", ctnetChain, bandwidthChain, tuningChain)
	if err := e.cni.CheckNetworkList(ctx, noPortmap, rt); err != nil {
		t.Errorf("CHECK of the chain: %v", err)
	}
	e.del(l, rt)
	e.del(l, rt)
	if out := httpGet(s.Upstream, sandbox.HostAddr, "9090"); strings.Contains(out, "hello") {
		t.Errorf("port 9090 still answers after DEL")
	}
	if nat := s.Host.MustRun("iptables-save", "-t", "nat"); strings.Contains(nat, "10.95.0.") {
		t.Errorf("portmap's rules left after DEL:\n%s", nat)
	}
	nothingLeft(t, s, "chain", "ctchain0")
}

// TestCNIIPAM delegates addresses to IPAM plugins (host-local, static): the
// network is made from the subnet the IPAM's address lies in, the address is
// the IPAM's, and DEL returns the lease.
func TestCNIIPAM(t *testing.T) {
	e := newCNIEnv(t)
	s := e.s
	ctx := context.Background()
	data := t.TempDir()

	t.Run("host-local", func(t *testing.T) {
		l := e.list("1.1.0", "hl", fmt.Sprintf(`{"type":"ctnet","bridge":"cthl0",
			"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.96.0.0/24","rangeStart":"10.96.0.100","gateway":"10.96.0.1"}]]}}`, data))
		ns := s.Netns()
		rt := rtConf("hl1", ns)
		r := e.add(l, rt)
		if got := r.IPs[0].Address.String(); got != "10.96.0.100/24" {
			t.Errorf("address %s, host-local's first is 10.96.0.100/24", got)
		}
		if got := addrOf(t, ns, "eth0"); got != "10.96.0.100" {
			t.Errorf("the kernel has %s", got)
		}
		if n := inspectNetworks(t, s, "hl")[0]; len(n.IPAM.Config) != 1 || n.IPAM.Config[0].Subnet != "10.96.0.0/24" || n.IPAM.Config[0].Gateway != "10.96.0.1" {
			t.Errorf("network made from the IPAM's address: %+v", n.IPAM.Config)
		}
		if err := ns.Ping("10.96.0.1"); err != nil {
			t.Error(err)
		}
		lease := filepath.Join(data, "hl", "10.96.0.100")
		if !fileExists(lease) {
			t.Errorf("host-local has no lease %s", lease)
		}
		if err := e.cni.CheckNetworkList(ctx, l, rt); err != nil {
			t.Errorf("CHECK: %v", err)
		}
		if err := e.cni.GetStatusNetworkList(ctx, l); err != nil {
			t.Errorf("STATUS: %v", err)
		}
		e.del(l, rt)
		e.del(l, rt)
		if fileExists(lease) {
			t.Errorf("DEL left host-local's lease %s", lease)
		}
		// GC gives host-local back the addresses of what it removes.
		keep, drop := rtConf("hl-keep", s.Netns()), rtConf("hl-drop", s.Netns())
		kr, dr := e.add(l, keep), e.add(l, drop)
		err := e.cni.GCNetworkList(ctx, l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "hl-keep", IfName: "eth0"}}})
		if err != nil {
			t.Fatalf("GC: %v", err)
		}
		if ip := kr.IPs[0].Address.IP.String(); !fileExists(filepath.Join(data, "hl", ip)) {
			t.Errorf("GC released the lease %s of a valid attachment", ip)
		}
		if ip := dr.IPs[0].Address.IP.String(); fileExists(filepath.Join(data, "hl", ip)) {
			t.Errorf("GC left host-local's lease %s", ip)
		}
		e.del(l, keep)
		nothingLeft(t, s, "hl", "cthl0")
	})

	t.Run("static", func(t *testing.T) {
		l := e.list("1.0.0", "st", `{"type":"ctnet","bridge":"ctst0",
			"ipam":{"type":"static","addresses":[{"address":"10.97.0.9/24","gateway":"10.97.0.1"}]}}`)
		ns := s.Netns()
		rt := rtConf("st1", ns)
		r := e.add(l, rt)
		if got := r.IPs[0].Address.String(); got != "10.97.0.9/24" {
			t.Errorf("address %s, static says 10.97.0.9/24", got)
		}
		if err := ns.Ping("10.97.0.1"); err != nil {
			t.Error(err)
		}
		e.del(l, rt)
		nothingLeft(t, s, "st", "ctst0")
	})

	t.Run("missing plugin", func(t *testing.T) {
		l := e.list("1.1.0", "nope", `{"type":"ctnet","ipam":{"type":"no-such-ipam"}}`)
		_, err := e.cni.AddNetworkList(ctx, l, rtConf("nope", s.Netns()))
		if te := cniErr(t, err); !strings.Contains(te.Msg, "no-such-ipam") {
			t.Errorf("code %d %q", te.Code, te.Msg)
		}
	})
}
