package main

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

const netavarkBin = "/usr/lib/podman/netavark"

// attacher is one tool's way to attach a namespace to its bridge and take it
// off again; both return the time the tool took.
type attacher struct {
	name   string
	sb     *sandbox
	attach func(id string, i int, ns string) time.Duration
	detach func(id string, i int, ns string) time.Duration
	filled int
}

// addr returns the i-th container address of a /16 (skipping .0 and .1).
func addr(prefix string, i int) string {
	p := netip.MustParsePrefix(prefix)
	a := p.Addr().As4()
	v := uint32(a[0])<<24 | uint32(a[1])<<16 | uint32(a[2])<<8 | uint32(a[3])
	v += uint32(i) + 2
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}).String()
}

func (b *bench) ctnetEnv(s *sandbox) []string {
	env := []string{"CTNET_ROOT=" + filepath.Join(s.dir, "root"), "CTNET_RUN_ROOT=" + filepath.Join(s.run, "ctnet")}
	if s.cgroup != nil {
		env = append(env, "CTNET_CGROUP="+s.cgroup.Dir)
	}
	return env
}

func (b *bench) ctnetAttacher() *attacher {
	s := b.sandbox("ctnet", false)
	env := b.ctnetEnv(s)
	run := func(args ...string) time.Duration {
		return time.Duration(s.must(request{Op: "exec", Argv: append([]string{b.ctnet}, args...), Env: env}).Ns)
	}
	run("network", "ls") // makes the default network, as first use on a host does
	return &attacher{name: "ctnet", sb: s,
		attach: func(id string, i int, ns string) time.Duration {
			return run("network", "connect", "bridge", "--netns", ns)
		},
		detach: func(id string, i int, ns string) time.Duration {
			return run("network", "disconnect", "bridge", "--netns", ns)
		}}
}

func (b *bench) floorAttacher(inproc *series) *attacher {
	s := b.sandbox("floor", false)
	for _, c := range [][]string{
		{"ip", "link", "add", "bnfl0", "type", "bridge"},
		{"ip", "addr", "add", "10.77.0.1/16", "dev", "bnfl0"},
		{"ip", "link", "set", "bnfl0", "up"},
	} {
		s.exec(c...)
	}
	return &attacher{name: "floor", sb: s,
		attach: func(id string, i int, ns string) time.Duration {
			r := s.must(request{Op: "exec", Argv: []string{b.floor, "-netns", ns, "-bridge", "bnfl0",
				"-host-if", fmt.Sprintf("bnf%07x", i), "-addr", addr("10.77.0.0/16", i) + "/16", "-gw", "10.77.0.1"}})
			if inproc != nil {
				if v, err := strconv.ParseInt(strings.TrimSpace(r.Out), 10, 64); err == nil {
					inproc.addD(time.Duration(v))
				}
			}
			return time.Duration(r.Ns)
		},
		// The floor of removal: drop the namespace, the kernel does the rest.
		detach: func(id string, i int, ns string) time.Duration {
			return s.rmns(id)
		}}
}

func cniPlugins(dataDir string, chained bool) []json.RawMessage {
	conf := func(m map[string]any) json.RawMessage {
		m["cniVersion"] = "1.0.0"
		m["name"] = "bn"
		b, _ := json.Marshal(m)
		return b
	}
	p := []json.RawMessage{conf(map[string]any{
		"type": "bridge", "bridge": "cni0", "isGateway": true, "ipMasq": true,
		"ipam": map[string]any{
			"type":    "host-local",
			"ranges":  [][]map[string]string{{{"subnet": "10.88.0.0/16"}}},
			"routes":  []map[string]string{{"dst": "0.0.0.0/0"}},
			"dataDir": dataDir,
		},
	})}
	if chained {
		p = append(p,
			conf(map[string]any{"type": "portmap", "capabilities": map[string]bool{"portMappings": true}, "snat": true}),
			conf(map[string]any{"type": "firewall", "backend": "iptables"}))
	}
	return p
}

func (b *bench) cniAttacher(name string, chained bool) *attacher {
	s := b.sandbox(name, false)
	plugins := cniPlugins(filepath.Join(s.run, "cni-networks"), chained)
	call := func(op, id, ns string) time.Duration {
		return time.Duration(s.must(request{Op: op, Name: id, Netns: ns, Plugins: plugins}).Ns)
	}
	return &attacher{name: name, sb: s,
		attach: func(id string, i int, ns string) time.Duration { return call("cni-add", id, ns) },
		detach: func(id string, i int, ns string) time.Duration { return call("cni-del", id, ns) }}
}

func hexID(s string) string {
	h := sha256.Sum256([]byte(s))
	return hex.EncodeToString(h[:])
}

// netavarkOptions is what podman hands netavark: podman does the address
// allocation, so the address is static here.
func netavarkOptions(id string, i int) string {
	netID := hexID("bn-network")
	o := map[string]any{
		"container_id":   hexID(id),
		"container_name": id,
		"port_mappings":  nil,
		"networks": map[string]any{"bn": map[string]any{
			"interface_name": "eth0",
			"static_ips":     []string{addr("10.89.0.0/16", i)},
		}},
		"network_info": map[string]any{"bn": map[string]any{
			"name": "bn", "id": netID, "driver": "bridge", "network_interface": "bnpodman0",
			"subnets":      []map[string]string{{"subnet": "10.89.0.0/16", "gateway": "10.89.0.1"}},
			"ipv6_enabled": false, "internal": false, "dns_enabled": false,
			"ipam_options": map[string]string{"driver": "host-local"},
		}},
	}
	b, _ := json.Marshal(o)
	return string(b)
}

func (b *bench) netavarkAttacher() *attacher {
	s := b.sandbox("netavark", false)
	cfg := filepath.Join(s.run, "netavark")
	s.exec("mkdir", "-p", cfg)
	call := func(verb, id string, i int, ns string) time.Duration {
		return time.Duration(s.must(request{Op: "exec", Argv: []string{netavarkBin, "--config", cfg, verb, ns},
			Stdin: netavarkOptions(id, i)}).Ns)
	}
	return &attacher{name: "netavark", sb: s,
		attach: func(id string, i int, ns string) time.Duration { return call("setup", id, i, ns) },
		detach: func(id string, i int, ns string) time.Duration { return call("teardown", id, i, ns) }}
}

// attachDetach is the core comparison: with N namespaces already on each
// tool's bridge, attach a fresh one and detach it again, tools interleaved.
func (b *bench) attachDetach() {
	floorIn := map[int]*series{}
	floor := b.floorAttacher(nil)
	tools := []*attacher{b.ctnetAttacher(), floor, b.cniAttacher("cni", false),
		b.cniAttacher("cni-chained", true), b.netavarkAttacher()}

	type key struct {
		tool, what string
		level      int
	}
	res := map[key]*series{}
	get := func(t, w string, l int) *series {
		k := key{t, w, l}
		if res[k] == nil {
			res[k] = &series{}
		}
		return res[k]
	}
	dropCtnet := map[int]*series{}
	discAfterDrop := map[int]*series{}
	fillTime := map[string]time.Duration{}

	for li, level := range b.levels {
		curIn := &series{}
		floor.attach = b.floorOn(floor.sb, curIn)
		for _, t := range tools {
			start := time.Now()
			for t.filled < level {
				id := fmt.Sprintf("bnp%d", t.filled)
				ns := t.sb.mkns(id)
				t.attach(id, t.filled+5000, ns)
				t.filled++
			}
			fillTime[t.name] += time.Since(start)
			logf("%s: %d attached (fill %v)", t.name, t.filled, time.Since(start).Round(time.Millisecond))
		}
		curIn.v = nil // prefill samples are not measurements
		floorIn[level] = curIn
		dropCtnet[level], discAfterDrop[level] = &series{}, &series{}
		for it := 0; it < b.n; it++ {
			for k := range tools {
				t := tools[(k+it)%len(tools)]
				id := fmt.Sprintf("bnm%d-%d", level, it)
				ns := t.sb.mkns(id)
				idx := 60000 + li*1000 + it
				get(t.name, "attach", level).addD(t.attach(id, idx, ns))
				get(t.name, "detach", level).addD(t.detach(id, idx, ns))
				if t.name != "floor" {
					t.sb.rmns(id)
				}
				if t.name == "ctnet" {
					// Container removal: the namespace goes, ctnet forgets the endpoint.
					id2 := id + "d"
					ns2 := t.sb.mkns(id2)
					t.attach(id2, idx, ns2)
					dropCtnet[level].addD(t.sb.rmns(id2))
					discAfterDrop[level].addD(t.detach(id2, idx, ns2))
				}
			}
		}
		logf("level %d done: ctnet attach %.2f ms, floor %.2f ms", level,
			get("ctnet", "attach", level).median(), get("floor", "attach", level).median())
	}

	w := &b.report
	fmt.Fprintf(w, "Each cell: median (min–max) in ms over n = %d samples per cell; tools interleaved per sample, "+
		"each in its own sandbox network namespace. \"Whole process\": from exec to exit, timed by a worker inside the sandbox "+
		"(no nsenter in the figure). Ratios are peer median / ctnet median.\n\n", b.n)
	peers := []string{"floor", "cni", "cni-chained", "netavark"}
	for _, what := range []string{"attach", "detach"} {
		t := &table{head: []string{"on bridge", "ctnet"}}
		for _, p := range peers {
			t.head = append(t.head, p, p+"/ctnet")
		}
		if what == "attach" {
			t.head = append(t.head, "floor in-process")
		}
		for _, l := range b.levels {
			c := get("ctnet", what, l)
			row := []string{strconv.Itoa(l), c.cell(2)}
			for _, p := range peers {
				row = append(row, get(p, what, l).cell(2), ratio(get(p, what, l), c))
			}
			if what == "attach" {
				row = append(row, floorIn[l].cell(3))
			}
			t.row(row...)
		}
		fmt.Fprintf(w, "### %s\n\n%s\n", what, t)
	}
	fmt.Fprintf(w, "Detach means: ctnet `network disconnect` (deletes the host veth); CNI DEL (bridge: deletes the veth "+
		"inside the namespace; chained: firewall, portmap, bridge); netavark teardown; floor: dropping the namespace "+
		"(unmount of its last reference), which is what container removal costs when the kernel reclaims the veth in the background.\n\n")
	t := &table{head: []string{"on bridge", "drop namespace (in-process)", "then `ctnet network disconnect`", "sum"}}
	for _, l := range b.levels {
		sum := &series{}
		for i := range dropCtnet[l].v {
			sum.add(dropCtnet[l].v[i] + discAfterDrop[l].v[i])
		}
		t.row(strconv.Itoa(l), dropCtnet[l].cell(3), discAfterDrop[l].cell(2), sum.cell(2))
	}
	fmt.Fprintf(w, "### ctnet: removal by dropping the namespace\n\n"+
		"For a namespace ctnet did not create, removal is: drop the namespace (in-process unmount of its last reference), "+
		"then `ctnet network disconnect` by the now dangling path so ctnet forgets the endpoint and lease. "+
		"(For ctnet's own containers, removal is inside `ctnet run --rm`; see the whole-container section.)\n\n%s\n", t)
	fmt.Fprintf(w, "Time to fill the bridges to %d (untimed for the tables, sequential): ", b.levels[len(b.levels)-1])
	var parts []string
	for _, tl := range tools {
		parts = append(parts, fmt.Sprintf("%s %v", tl.name, fillTime[tl.name].Round(100*time.Millisecond)))
	}
	fmt.Fprintf(w, "%s.\n", strings.Join(parts, ", "))
	for _, tl := range tools {
		b.recordMem(tl.name, fmt.Sprintf("%d namespaces attached", tl.filled), tl.sb)
	}
	for _, tl := range tools {
		b.drop(tl.sb)
	}
}

// floorOn is the floor attacher's attach bound to a series for its
// in-process time.
func (b *bench) floorOn(s *sandbox, in *series) func(id string, i int, ns string) time.Duration {
	return func(id string, i int, ns string) time.Duration {
		r := s.must(request{Op: "exec", Argv: []string{b.floor, "-netns", ns, "-bridge", "bnfl0",
			"-host-if", fmt.Sprintf("bnf%07x", i%0xfffffff), "-addr", addr("10.77.0.0/16", i) + "/16", "-gw", "10.77.0.1"}})
		if v, err := strconv.ParseInt(strings.TrimSpace(r.Out), 10, 64); err == nil {
			in.addD(time.Duration(v))
		}
		return time.Duration(r.Ns)
	}
}
