package main

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"
)

// runner is one container tool (ctnet run or docker) in its sandbox.
type runner struct {
	name  string
	sb    *sandbox
	cli   func(args ...string) response
	image string
	names []string // containers to remove when the section ends
}

// start runs a detached container and returns the time the client took.
func (r *runner) start(name string, opts ...string) time.Duration {
	args := append([]string{"run", "-d", "--name", name}, opts...)
	args = append(args, r.image, "sleep", "3600")
	d := time.Duration(r.cli(args...).Ns)
	r.names = append(r.names, name)
	return d
}

func (r *runner) remove(name string) time.Duration {
	d := time.Duration(r.cli("rm", "-f", name).Ns)
	for i, n := range r.names {
		if n == name {
			r.names = append(r.names[:i], r.names[i+1:]...)
			break
		}
	}
	return d
}

// removeAll removes what the section started, also after a failure.
func (r *runner) removeAll() {
	for len(r.names) > 0 {
		n := r.names[len(r.names)-1]
		r.names = r.names[:len(r.names)-1]
		if res := r.cliCall("rm", "-f", n); res.Err != "" {
			logf("%s: rm -f %s: %s", r.name, n, res.Err)
		}
	}
}

// cliCall is cli without aborting the section (used while cleaning up).
func (r *runner) cliCall(args ...string) (res response) {
	defer func() {
		if p := recover(); p != nil {
			res.Err = fmt.Sprint(p)
		}
	}()
	return r.cli(args...)
}

// runners returns ctnet (always) and docker (when dockerd runs here), each
// able to start containers from the same busybox image.
func (b *bench) runners(ctnetSandbox string) (*runner, *runner, error) {
	crun, cs, cerr := b.ctnetRun(ctnetSandbox)
	if cerr != nil {
		panic(cerr)
	}
	c := &runner{name: "ctnet", sb: cs, cli: crun, image: "bn-busybox"}
	d, derr := b.dockerd()
	if derr != nil {
		return c, nil, derr
	}
	return c, &runner{name: "docker", sb: d.sb, cli: d.run, image: "bn-busybox"}, nil
}

// footprint is what a tool's published ports cost at rest.
type footprint struct {
	rules, elements int
	procs           []procRSS
}

// nftCounts counts the rules and the set and map elements of one nft table.
func nftCounts(s *sandbox, family, table string) (rules, elems int) {
	out := s.must(request{Op: "exec", Argv: []string{"nft", "-j", "list", "table", family, table}}).Out
	var j struct {
		Nftables []map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(out), &j); err != nil {
		panic(fmt.Errorf("nft -j list table %s %s: %w", family, table, err))
	}
	for _, o := range j.Nftables {
		if _, ok := o["rule"]; ok {
			rules++
		}
		for _, k := range []string{"set", "map"} {
			if raw, ok := o[k]; ok {
				var s struct {
					Elem []json.RawMessage `json:"elem"`
				}
				json.Unmarshal(raw, &s)
				elems += len(s.Elem)
			}
		}
	}
	return rules, elems
}

// iptablesRules counts the rules of every iptables and ip6tables table.
func iptablesRules(s *sandbox) int {
	n := 0
	for _, c := range []string{"iptables-save", "ip6tables-save"} {
		out := s.call(request{Op: "exec", Argv: []string{c}}).Out
		for _, l := range strings.Split(out, "\n") {
			if strings.HasPrefix(l, "-A ") {
				n++
			}
		}
	}
	return n
}

func (r *runner) footprint() footprint {
	var f footprint
	if r.name == "ctnet" {
		f.rules, f.elements = nftCounts(r.sb, "inet", "ctnet")
	} else {
		f.rules = iptablesRules(r.sb)
	}
	f.procs = r.sb.call(request{Op: "procs"}).Procs
	return f
}

// procSummary renders "name×count" per command and the RSS and PSS totals in MB.
func procSummary(procs []procRSS) (desc string, rss, pss float64) {
	count := map[string]int{}
	var names []string
	for _, p := range procs {
		rss += float64(p.RSSkB) / 1024
		pss += float64(p.PSSkB) / 1024
		if count[p.Comm] == 0 {
			names = append(names, p.Comm)
		}
		count[p.Comm]++
	}
	sort.Slice(names, func(i, j int) bool { return count[names[i]] > count[names[j]] })
	var parts []string
	for _, n := range names {
		parts = append(parts, fmt.Sprintf("%s×%d", n, count[n]))
	}
	if len(parts) == 0 {
		return "none", 0, 0
	}
	return strings.Join(parts, ", "), rss, pss
}

// ports measures publishing: the time to start a container that publishes
// one more port with 0, 100 and 1000 ports already published by other
// containers (100 per container, as -p 20000-20099:20000-20099), paired with
// the same start without -p; and what the published ports cost at rest:
// firewall rules and elements, processes and their memory.
func (b *bench) ports() {
	w := &b.report
	levels := []int{0, 100, 1000}
	if b.quick {
		levels = []int{0, 100}
	}
	c, d, derr := b.runners("ctnet-ports")
	tools := []*runner{c}
	if d != nil {
		tools = append(tools, d)
	}
	defer func() {
		for _, t := range tools {
			t.removeAll()
		}
		b.drop(c.sb)
	}()

	type key struct {
		tool, what string
		level      int
	}
	res := map[key]*series{}
	get := func(t, wh string, l int) *series {
		k := key{t, wh, l}
		if res[k] == nil {
			res[k] = &series{}
		}
		return res[k]
	}
	foot := map[key]footprint{}
	fill := map[string]*series{}
	filled := map[string]int{}
	for _, level := range levels {
		for _, t := range tools {
			if fill[t.name] == nil {
				fill[t.name] = &series{}
			}
			for filled[t.name] < level {
				k := filled[t.name] / 100
				r := fmt.Sprintf("%d-%d", 20000+100*k, 20099+100*k)
				fill[t.name].addD(t.start(fmt.Sprintf("bnpf%d", k), "-p", r+":"+r))
				filled[t.name] += 100
			}
			foot[key{t.name, "at", level}] = t.footprint()
			logf("%s: %d ports published", t.name, filled[t.name])
		}
		for it := 0; it < b.n; it++ {
			for k := range tools {
				t := tools[(k+it)%len(tools)]
				withPort := func() {
					p := strconv.Itoa(30000 + it)
					get(t.name, "run -p", level).addD(t.start("bnq", "-p", p+":80"))
					if it == 0 {
						foot[key{t.name, "plus1", level}] = t.footprint()
					}
					get(t.name, "rm -p", level).addD(t.remove("bnq"))
				}
				without := func() {
					get(t.name, "run", level).addD(t.start("bnq0"))
					t.remove("bnq0")
				}
				if it%2 == 0 {
					withPort()
					without()
				} else {
					without()
					withPort()
				}
				pr, nr := get(t.name, "run -p", level), get(t.name, "run", level)
				get(t.name, "diff", level).add(pr.v[len(pr.v)-1] - nr.v[len(nr.v)-1])
			}
		}
		logf("ports level %d: ctnet run -d -p %.1f ms", level, get("ctnet", "run -p", level).median())
	}

	fmt.Fprintf(w, "Time for the client to start a detached container that publishes one more port (`run -d --name N -p HOSTPORT:80 "+
		"bn-busybox sleep 3600`, whole client process), paired per iteration with the same start without `-p` (order alternating), "+
		"then `rm -f`; ms, median (min–max), n = %d per cell, ctnet and docker interleaved. The ports already published belong to "+
		"other running containers, 100 each (`-p 20000-20099:20000-20099`, …). ctnet has no cheaper path to measure: "+
		"`network connect` takes no `-p`, so publishing goes through `ctnet run`.\n\n", b.n)
	t := &table{head: []string{"ports already published", "tool", "run -d -p", "vs 0 ports", "run -d (no -p)", "cost of -p (paired)", "rm -f (with the port)"}}
	for _, l := range levels {
		for _, tl := range tools {
			rp := get(tl.name, "run -p", l)
			t.row(strconv.Itoa(l), tl.name, rp.cell(1), ratio(rp, get(tl.name, "run -p", levels[0])),
				get(tl.name, "run", l).cell(1), get(tl.name, "diff", l).cell(1), get(tl.name, "rm -p", l).cell(1))
		}
		if d != nil {
			t.row(strconv.Itoa(l), "docker/ctnet", ratio(get("docker", "run -p", l), get("ctnet", "run -p", l)), "",
				ratio(get("docker", "run", l), get("ctnet", "run", l)), ratio(get("docker", "diff", l), get("ctnet", "diff", l)),
				ratio(get("docker", "rm -p", l), get("ctnet", "rm -p", l)))
		}
	}
	fmt.Fprintf(w, "%s\n", t)

	ft := &table{head: []string{"ports published", "tool", "firewall rules", "set/map elements", "processes left running", "RSS (MB)", "PSS (MB)"}}
	for _, l := range levels {
		for _, state := range []string{"at", "plus1"} {
			for _, tl := range tools {
				f, ok := foot[key{tl.name, state, l}]
				if !ok {
					continue
				}
				n := strconv.Itoa(l)
				if state == "plus1" {
					n = strconv.Itoa(l+1) + " (one more container)"
				}
				elems := strconv.Itoa(f.elements)
				if tl.name != "ctnet" {
					elems = "—"
				}
				desc, rss, pss := procSummary(f.procs)
				ft.row(n, tl.name, strconv.Itoa(f.rules), elems, desc, fmt.Sprintf("%.1f", rss), fmt.Sprintf("%.1f", pss))
			}
		}
	}
	fmt.Fprintf(w, "What the ports cost at rest, in each tool's sandbox: rules and elements of ctnet's table (`nft -j list table inet ctnet`); "+
		"docker's rules (`iptables-save` + `ip6tables-save`, `-A` lines); every process in the sandbox's network namespace "+
		"(VmRSS sums shared pages once per process; PSS divides them among their users). The container's own process "+
		"(`sleep`) lives in the container's namespace and is not counted for either tool.\n\n%s\n", ft)
	var parts []string
	for _, tl := range tools {
		parts = append(parts, fmt.Sprintf("%s %s ms", tl.name, fill[tl.name].cell(0)))
	}
	fmt.Fprintf(w, "Starting one container that publishes 100 ports (fill, untimed in the tables above): %s.\n\n", strings.Join(parts, ", "))
	if derr != nil {
		fmt.Fprintf(w, "No docker figures: `%s`\n\n", firstLine(derr.Error()))
	}
}

// containers measures memory with many containers running: everything each
// tool keeps running with N detached containers on the default bridge, then
// with a few more on a user network (ctnet starts its DNS process there).
func (b *bench) containers() {
	w := &b.report
	n, u := 100, 10
	if b.quick {
		n, u = 10, 3
	}
	c, d, derr := b.runners("ctnet-many")
	tools := []*runner{c}
	if d != nil {
		tools = append(tools, d)
	}
	defer func() {
		for _, t := range tools {
			t.removeAll()
			t.cliCall("network", "rm", "bnuser")
		}
		b.drop(c.sb)
	}()
	starts := map[string]*series{}
	for _, t := range tools {
		starts[t.name] = &series{}
	}
	for i := 0; i < n; i++ {
		for k := range tools {
			t := tools[(k+i)%len(tools)]
			starts[t.name].addD(t.start(fmt.Sprintf("bnc%d", i)))
		}
	}
	type row struct {
		tool, state string
		procs       []procRSS
	}
	var rows []row
	for _, t := range tools {
		rows = append(rows, row{t.name, fmt.Sprintf("%d containers on the default bridge", n), t.sb.call(request{Op: "procs"}).Procs})
	}
	for _, t := range tools {
		t.cli("network", "create", "bnuser")
		for i := 0; i < u; i++ {
			t.start(fmt.Sprintf("bnu%d", i), "--network", "bnuser")
		}
		rows = append(rows, row{t.name, fmt.Sprintf("%d on the bridge + %d on a user network", n, u), t.sb.call(request{Op: "procs"}).Procs})
	}
	tb := &table{head: []string{"tool", "state", "processes left running", "RSS (MB)", "PSS (MB)", "PSS per container (MB)"}}
	for _, r := range rows {
		desc, rss, pss := procSummary(r.procs)
		per := n
		if strings.Contains(r.state, "user") {
			per = n + u
		}
		tb.row(r.tool, r.state, desc, fmt.Sprintf("%.1f", rss), fmt.Sprintf("%.1f", pss), fmt.Sprintf("%.2f", pss/float64(per)))
	}
	fmt.Fprintf(w, "`run -d --name N bn-busybox sleep 3600` × %d per tool, the tools interleaved per container; then a user network "+
		"`bnuser` with %d more. Memory of every process in the tool's sandbox network namespace (the containers' own `sleep` "+
		"processes excluded for both). VmRSS counts shared pages in every process; PSS divides them among their users, so the "+
		"PSS total is what the machine actually spends.\n\n%s\n", n, u, tb)
	t2 := &table{head: []string{"tool", "run -d, one container, while 0 → " + strconv.Itoa(n) + " run"}}
	for _, t := range tools {
		t2.row(t.name, starts[t.name].cell(1))
	}
	if d != nil {
		t2.row("docker/ctnet", ratio(starts["docker"], starts["ctnet"]))
	}
	fmt.Fprintf(w, "Start time of those containers (whole client process, ms, median (min–max), n = %d):\n\n%s\n", n, t2)
	if derr != nil {
		fmt.Fprintf(w, "No docker figures: `%s`\n\n", firstLine(derr.Error()))
	}
}
