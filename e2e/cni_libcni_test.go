package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/containernetworking/cni/pkg/version"

	"github.com/ctnet/ctnet/internal/sandbox"
)

// cniEnv is libcni, as a runtime uses it, calling plugins inside a test's
// sandbox host: ctnet (this build) and Debian's reference plugins.
type cniEnv struct {
	t   testing.TB
	s   *sandbox.Sandbox
	cni *libcni.CNIConfig
	dir string // plugin directory holding ctnet
}

// cniPluginDir is where Debian's containernetworking-plugins are.
const cniPluginDir = "/usr/lib/cni"

func newCNIEnv(t testing.TB) *cniEnv {
	t.Helper()
	s := sandbox.New(t)
	dir := t.TempDir()
	if err := os.Symlink(sandbox.Binary(t), filepath.Join(dir, "ctnet")); err != nil {
		t.Fatal(err)
	}
	e := &cniEnv{t: t, s: s, dir: dir}
	e.cni = libcni.NewCNIConfigWithCacheDir([]string{dir, cniPluginDir}, filepath.Join(dir, "cache"), sandboxExec{s})
	return e
}

// sandboxExec runs plugins in the sandbox host's network and mount
// namespaces, as a runtime on that host would.
type sandboxExec struct{ s *sandbox.Sandbox }

func (x sandboxExec) ExecPlugin(ctx context.Context, path string, stdin []byte, environ []string) ([]byte, error) {
	cmd := x.s.Host.Command(path)
	cmd.Env = environ
	if x.s.Cgroup != "" {
		cmd.Env = append(cmd.Env, "CTNET_CGROUP="+x.s.Cgroup)
	}
	cmd.Stdin = bytes.NewReader(stdin)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		te := &types.Error{}
		if json.Unmarshal(out.Bytes(), te) == nil && te.Msg != "" {
			return nil, te
		}
		return nil, fmt.Errorf("%s: %v: %s%s", filepath.Base(path), err, out.String(), errOut.String())
	}
	return out.Bytes(), nil
}

func (sandboxExec) FindInPath(plugin string, paths []string) (string, error) {
	return invoke.FindInPath(plugin, paths)
}

func (sandboxExec) Decode(b []byte) (version.PluginInfo, error) {
	return (&version.PluginDecoder{}).Decode(b)
}

// list is a conflist of the plugins given (JSON objects), ctnet's state
// directories added to ctnet's.
func (e *cniEnv) list(ver, name string, plugins ...string) *libcni.NetworkConfigList {
	e.t.Helper()
	var ps []json.RawMessage
	for _, p := range plugins {
		var m map[string]any
		if err := json.Unmarshal([]byte(p), &m); err != nil {
			e.t.Fatalf("plugin %s: %v", p, err)
		}
		if m["type"] == "ctnet" {
			m["root"], m["runRoot"] = e.s.Root, e.s.RunRoot
		}
		b, _ := json.Marshal(m)
		ps = append(ps, b)
	}
	b, _ := json.Marshal(map[string]any{"cniVersion": ver, "name": name, "plugins": ps})
	l, err := libcni.NetworkConfFromBytes(b)
	if err != nil {
		e.t.Fatalf("conflist: %v\n%s", err, b)
	}
	return l
}

func rtConf(id string, ns *sandbox.NS, args ...[2]string) *libcni.RuntimeConf {
	return &libcni.RuntimeConf{ContainerID: id, NetNS: ns.NetPath(), IfName: "eth0", Args: args, CapabilityArgs: map[string]any{}}
}

func (e *cniEnv) add(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) *types100.Result {
	e.t.Helper()
	r, err := e.cni.AddNetworkList(context.Background(), l, rt)
	if err != nil {
		e.t.Fatalf("ADD %s: %v", rt.ContainerID, err)
	}
	res, err := types100.NewResultFromResult(r)
	if err != nil {
		e.t.Fatalf("ADD %s: result: %v", rt.ContainerID, err)
	}
	return res
}

func (e *cniEnv) del(l *libcni.NetworkConfigList, rt *libcni.RuntimeConf) {
	e.t.Helper()
	if err := e.cni.DelNetworkList(context.Background(), l, rt); err != nil {
		e.t.Fatalf("DEL %s: %v", rt.ContainerID, err)
	}
}

// cniErr is the CNI error of a failed call.
func cniErr(t *testing.T, err error) *types.Error {
	t.Helper()
	var te *types.Error
	if !errors.As(err, &te) {
		t.Fatalf("want a CNI error, got %v", err)
	}
	return te
}

// bridgePorts are the host links enslaved to the bridge.
func bridgePorts(t *testing.T, s *sandbox.Sandbox, br string) []string {
	t.Helper()
	var out []string
	for _, l := range hostLinks(t, s.Host) {
		if l.Master == br {
			out = append(out, l.Name)
		}
	}
	return out
}

// nothingLeft checks that no attachment, veth or published port of the
// network remains.
func nothingLeft(t *testing.T, s *sandbox.Sandbox, net, br string) {
	t.Helper()
	if n := inspectNetworks(t, s, net)[0]; len(n.Containers) != 0 {
		t.Errorf("attachments left on %s: %v", net, n.Containers)
	}
	if ports := bridgePorts(t, s, br); len(ports) != 0 {
		t.Errorf("veths left on %s: %v", br, ports)
	}
	for _, line := range strings.Split(s.Host.MustRun("nft", "list", "table", "inet", "ctnet"), "\n") {
		if strings.Contains(line, " : ") && strings.Contains(line, "10.89.") {
			t.Errorf("published port left in table inet ctnet: %s", line)
		}
	}
}

const ctnetPods = `{"type":"ctnet","network":"pods","subnet":"10.89.0.0/24","bridge":"ctpods0","mtu":1400,
	"capabilities":{"portMappings":true,"ips":true,"mac":true,"aliases":true}}`

// TestCNILibcni drives ctnet through libcni, as containerd and CRI-O do:
// ADD at every spec version with its result compared field by field with the
// kernel, runtime-requested addresses and MAC, CNI_ARGS in inspect, DEL in
// every case, CHECK, STATUS, GC and the error codes.
func TestCNILibcni(t *testing.T) {
	e := newCNIEnv(t)
	s := e.s
	ctx := context.Background()

	t.Run("add", func(t *testing.T) {
		for i, ver := range []string{"1.1.0", "1.0.0", "0.4.0", "0.3.1"} {
			ns := s.Netns()
			l := e.list(ver, "pods", ctnetPods)
			id := fmt.Sprintf("add%d", i)
			before := bridgePorts(t, s, "ctpods0")
			r, err := e.cni.AddNetworkList(ctx, l, rtConf(id, ns))
			if err != nil {
				t.Fatalf("%s: ADD: %v", ver, err)
			}
			if r.Version() != ver {
				t.Errorf("%s: result version %s", ver, r.Version())
			}
			res, err := types100.NewResultFromResult(r)
			if err != nil {
				t.Fatal(err)
			}
			hostIf := ""
			for _, p := range bridgePorts(t, s, "ctpods0") {
				if !slices.Contains(before, p) {
					hostIf = p
				}
			}
			mac := macOf(t, ns, "eth0")
			addr := addrOf(t, ns, "eth0")
			want := types100.Result{
				CNIVersion: "1.1.0",
				Interfaces: []*types100.Interface{{Name: "ctpods0"}, {Name: hostIf}, {Name: "eth0", Mac: mac, Mtu: 1400, Sandbox: ns.NetPath()}},
				IPs:        []*types100.IPConfig{{Interface: types100.Int(2), Address: mustCIDR(t, addr+"/24"), Gateway: net.ParseIP("10.89.0.1")}},
				Routes:     []*types.Route{{Dst: mustCIDR(t, "0.0.0.0/0"), GW: net.ParseIP("10.89.0.1")}},
				DNS:        types.DNS{Nameservers: []string{"127.0.0.11"}},
			}
			if ver < "1.0.0" {
				want.Interfaces[2].Mtu = 0 // not in results before 1.0.0
				want.CNIVersion = res.CNIVersion
			}
			compareResult(t, ver, res, &want)
			if err := ns.Ping("10.89.0.1"); err != nil {
				t.Errorf("%s: %v", ver, err)
			}
			if strings.Contains(ns.MustRun("ip", "route"), "default via 10.89.0.1 dev eth0") == false {
				t.Errorf("%s: no default route via the gateway: %s", ver, ns.MustRun("ip", "route"))
			}
			e.del(l, rtConf(id, ns))
		}
		nothingLeft(t, s, "pods", "ctpods0")
	})

	l := e.list("1.1.0", "pods", ctnetPods)

	t.Run("inspect shows CNI_ARGS", func(t *testing.T) {
		ns := s.Netns()
		rt := rtConf("c0ffee", ns, [2]string{"K8S_POD_NAMESPACE", "shop"}, [2]string{"K8S_POD_NAME", "web-0"})
		r := e.add(l, rt)
		defer e.del(l, rt)
		n := inspectNetworks(t, s, "pods")[0]
		var names []string
		for _, c := range n.Containers {
			names = append(names, c.Name)
			if c.Name == "shop/web-0 c0ffee/eth0" && c.IPv4Address != r.IPs[0].Address.String() {
				t.Errorf("inspect says %s, ADD gave %s", c.IPv4Address, r.IPs[0].Address.String())
			}
		}
		if !slices.Contains(names, "shop/web-0 c0ffee/eth0") {
			t.Errorf("inspect does not show the pod: %v", names)
		}
	})

	t.Run("runtimeConfig ips and mac", func(t *testing.T) {
		ns := s.Netns()
		rt := rtConf("static", ns)
		rt.CapabilityArgs = map[string]any{"ips": []string{"10.89.0.77/24"}, "mac": "02:00:00:00:00:77"}
		r := e.add(l, rt)
		defer e.del(l, rt)
		if got := r.IPs[0].Address.String(); got != "10.89.0.77/24" {
			t.Errorf("address %s, asked for 10.89.0.77/24", got)
		}
		if got := r.Interfaces[2].Mac; got != "02:00:00:00:00:77" {
			t.Errorf("MAC %s, asked for 02:00:00:00:00:77", got)
		}
		if got := addrOf(t, ns, "eth0"); got != "10.89.0.77" {
			t.Errorf("kernel has %s", got)
		}
		if got := macOf(t, ns, "eth0"); got != "02:00:00:00:00:77" {
			t.Errorf("kernel MAC %s", got)
		}
		// The same address again is a conflict, CNI code 100.
		other := rtConf("static2", s.Netns())
		other.CapabilityArgs = map[string]any{"ips": []string{"10.89.0.77/24"}}
		_, err := e.cni.AddNetworkList(ctx, l, other)
		if te := cniErr(t, err); te.Code != 100 || !strings.Contains(te.Msg, "10.89.0.77") {
			t.Errorf("address in use: code %d %q", te.Code, te.Msg)
		}
	})

	t.Run("dual stack", func(t *testing.T) {
		dl := e.list("1.1.0", "dual", `{"type":"ctnet","subnet":["10.88.5.0/24","fd00:88:5::/64"],"bridge":"ctdual0"}`)
		ns := s.Netns()
		rt := rtConf("dual", ns)
		r := e.add(dl, rt)
		defer e.del(dl, rt)
		var got []string
		for _, ip := range r.IPs {
			got = append(got, ip.Address.String()+" via "+ip.Gateway.String())
		}
		want := []string{"10.88.5.2/24 via 10.88.5.1", "fd00:88:5::2/64 via fd00:88:5::1"}
		if !slices.Equal(got, want) {
			t.Errorf("ips %v, want %v", got, want)
		}
		if len(r.Routes) != 2 || r.Routes[1].Dst.String() != "::/0" {
			t.Errorf("routes %v, want the default of each family", r.Routes)
		}
		if out := ns.MustRun("ip", "-6", "-o", "addr", "show", "dev", "eth0"); !strings.Contains(out, "fd00:88:5::2/64") {
			t.Errorf("eth0 lacks its IPv6 address: %s", out)
		}
		if err := ns.Ping("fd00:88:5::1"); err != nil {
			t.Error(err)
		}
	})

	t.Run("del is idempotent", func(t *testing.T) {
		ns := s.Netns()
		rt := rtConf("del1", ns)
		e.add(l, rt)
		e.del(l, rt)
		e.del(l, rt) // twice
		e.del(l, rtConf("never-added", s.Netns()))
		// The namespace gone before DEL.
		gone := s.Netns()
		rt = rtConf("del2", gone)
		e.add(l, rt)
		gone.Kill()
		e.del(l, rt)
		// No prevResult: a runtime that lost its cache.
		ns = s.Netns()
		rt = rtConf("del3", ns)
		e.add(l, rt)
		fresh := libcni.NewCNIConfigWithCacheDir([]string{e.dir, cniPluginDir}, t.TempDir(), sandboxExec{s})
		if err := fresh.DelNetworkList(ctx, l, rt); err != nil {
			t.Fatalf("DEL without prevResult: %v", err)
		}
		if out := ns.MustRun("ip", "-o", "link"); strings.Contains(out, "eth0") {
			t.Errorf("eth0 left in the namespace after DEL: %s", out)
		}
		nothingLeft(t, s, "pods", "ctpods0")
	})

	t.Run("check", func(t *testing.T) {
		ns := s.Netns()
		rt := rtConf("chk", ns)
		r := e.add(l, rt)
		defer e.del(l, rt)
		if err := e.cni.CheckNetworkList(ctx, l, rt); err != nil {
			t.Fatalf("CHECK right after ADD: %v", err)
		}
		ns.MustRun("ip", "addr", "flush", "dev", "eth0")
		err := e.cni.CheckNetworkList(ctx, l, rt)
		want := "address " + r.IPs[0].Address.String() + " is missing on eth0"
		if te := cniErr(t, err); !strings.Contains(te.Msg, want) {
			t.Errorf("CHECK after flushing eth0: %q, want it to say %q", te.Msg, want)
		}
		err = e.cni.CheckNetworkList(ctx, l, rtConf("never", s.Netns()))
		if te := cniErr(t, err); te.Code != types.ErrUnknownContainer {
			t.Errorf("CHECK of no attachment: code %d %q", te.Code, te.Msg)
		}
	})

	t.Run("status", func(t *testing.T) {
		if err := e.cni.GetStatusNetworkList(ctx, l); err != nil {
			t.Errorf("STATUS: %v", err)
		}
		full := e.list("1.1.0", "tiny", `{"type":"ctnet","subnet":"10.90.0.0/30","bridge":"cttiny0"}`)
		if err := e.cni.GetStatusNetworkList(ctx, full); err != nil {
			t.Errorf("STATUS before the first ADD: %v", err)
		}
		rt := rtConf("tiny1", s.Netns())
		e.add(full, rt) // the one address of a /30
		defer e.del(full, rt)
		err := e.cni.GetStatusNetworkList(ctx, full)
		if te := cniErr(t, err); te.Code != types.ErrPluginNotAvailable || !strings.Contains(te.Msg, "no free address") {
			t.Errorf("STATUS of a full network: code %d %q", te.Code, te.Msg)
		}
	})

	t.Run("gc", func(t *testing.T) {
		keep, drop := rtConf("keep", s.Netns()), rtConf("drop", s.Netns())
		e.add(l, keep)
		e.add(l, drop)
		err := e.cni.GCNetworkList(ctx, l, &libcni.GCArgs{ValidAttachments: []types.GCAttachment{{ContainerID: "keep", IfName: "eth0"}}})
		if err != nil {
			t.Fatalf("GC: %v", err)
		}
		var names []string
		for _, c := range inspectNetworks(t, s, "pods")[0].Containers {
			names = append(names, c.Name)
		}
		if !slices.Equal(names, []string{"keep/eth0"}) {
			t.Errorf("after GC: %v, want only keep/eth0", names)
		}
		if ports := bridgePorts(t, s, "ctpods0"); len(ports) != 1 {
			t.Errorf("after GC the bridge has %v", ports)
		}
		e.del(l, keep)
		e.del(l, drop)
		nothingLeft(t, s, "pods", "ctpods0")
	})

	t.Run("errors", func(t *testing.T) {
		for _, c := range []struct {
			name, conf string
			ifname     string
			netns      string
			code       uint
			msg        string
		}{
			{"bad subnet", `{"type":"ctnet","network":"bad","subnet":"10.91.0.0/33"}`, "eth0", "", types.ErrInvalidNetworkConfig, `"subnet"`},
			{"bad network name", `{"type":"ctnet","network":"no way"}`, "eth0", "", types.ErrInvalidNetworkConfig, `"network"`},
			{"subnet of another network", `{"type":"ctnet","network":"pods","subnet":"10.92.0.0/24"}`, "eth0", "", types.ErrInvalidNetworkConfig, "exists with subnet 10.89.0.0/24"},
			{"overlapping subnet", `{"type":"ctnet","network":"other","subnet":"10.89.0.0/16"}`, "eth0", "", 100, "overlaps"},
			{"interface name too long", ctnetPods, "averyverylongifname", "", types.ErrInvalidEnvironmentVariables, "interface name"},
			{"bad port mapping", `{"type":"ctnet","network":"pods","capabilities":{"portMappings":true}}`, "eth0", "", types.ErrInvalidNetworkConfig, "protocol"},
			{"netns gone", ctnetPods, "eth0", "/proc/999999999/ns/net", types.ErrInvalidNetNS, "999999999"},
		} {
			t.Run(c.name, func(t *testing.T) {
				snap := carrierless(snapshot(t, s))
				rt := rtConf("bad", s.Netns())
				rt.IfName = c.ifname
				if c.netns != "" {
					rt.NetNS = c.netns
				}
				if c.name == "bad port mapping" {
					rt.CapabilityArgs = map[string]any{"portMappings": []map[string]any{{"hostPort": 8080, "containerPort": 80, "protocol": "icmp"}}}
				}
				_, err := e.cni.AddNetworkList(ctx, e.list("1.1.0", "x", c.conf), rt)
				te := cniErr(t, err)
				if te.Code != c.code || !strings.Contains(te.Msg+" "+te.Details, c.msg) {
					t.Errorf("code %d msg %q details %q; want code %d and %q", te.Code, te.Msg, te.Details, c.code, c.msg)
				}
				if d := diffLines(snap, carrierless(snapshot(t, s))); d != "" {
					t.Errorf("a failed ADD changed the host:\n%s", d)
				}
			})
		}
	})
}

// carrierless leaves out of a snapshot what follows a bridge's carrier, which
// the kernel updates a moment after its last port went.
func carrierless(snap string) string {
	return strings.NewReplacer("NO-CARRIER,", "", "state DOWN", "state UP", " linkdown", "").Replace(snap)
}

// macOf is a link's MAC as the kernel of ns has it.
func macOf(t testing.TB, ns *sandbox.NS, dev string) string {
	t.Helper()
	var l []struct{ Address string }
	if err := json.Unmarshal([]byte(ns.MustRun("ip", "-j", "link", "show", dev)), &l); err != nil || len(l) != 1 {
		t.Fatalf("ip -j link show %s: %v", dev, err)
	}
	return l[0].Address
}

func mustCIDR(t testing.TB, s string) net.IPNet {
	t.Helper()
	ip, n, err := net.ParseCIDR(s)
	if err != nil {
		t.Fatal(err)
	}
	n.IP = ip
	return *n
}

// compareResult compares two results field by field.
func compareResult(t *testing.T, what string, got, want *types100.Result) {
	t.Helper()
	j := func(v any) string { b, _ := json.Marshal(v); return string(b) }
	if got.CNIVersion != want.CNIVersion {
		t.Errorf("%s: cniVersion %q, want %q", what, got.CNIVersion, want.CNIVersion)
	}
	for i := 0; i < max(len(got.Interfaces), len(want.Interfaces)); i++ {
		var g, w *types100.Interface
		if i < len(got.Interfaces) {
			g = got.Interfaces[i]
		}
		if i < len(want.Interfaces) {
			w = want.Interfaces[i]
		}
		if j(g) != j(w) {
			t.Errorf("%s: interfaces[%d] = %s, want %s", what, i, j(g), j(w))
		}
	}
	for _, f := range []struct {
		name      string
		got, want any
	}{{"ips", got.IPs, want.IPs}, {"routes", got.Routes, want.Routes}, {"dns", got.DNS, want.DNS}} {
		if j(f.got) != j(f.want) {
			t.Errorf("%s: %s = %s, want %s", what, f.name, j(f.got), j(f.want))
		}
	}
}
