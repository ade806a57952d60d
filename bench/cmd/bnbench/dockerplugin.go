package main

import (
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// dockerPlugin measures Docker with ctnet's network driver (`docker network
// create -d ctnet`, `ctnet docker-plugin` serving it) against Docker's own
// bridge driver, in one dockerd: whole `run --rm … true`, and `run -d -p` with
// ports already published on the same network.
func (b *bench) dockerPlugin() {
	w := &b.report
	if err := exec.Command(b.ctnet, "docker-plugin", "--help").Run(); err != nil {
		panic(fmt.Errorf("this ctnet binary has no `docker-plugin` command"))
	}
	d := b.startDockerd("docker-ctnet", func(d *dockerd) {
		env := b.ctnetEnv(d.sb)
		d.sb.must(request{Op: "spawn", Name: "ctnet-docker-plugin", Env: env,
			Argv: []string{b.ctnet, "docker-plugin", "--docker-host", d.d.Host()}})
		for i := 0; ; i++ {
			if d.sb.call(request{Op: "exec", Argv: []string{"test", "-S", "/run/docker/plugins/ctnet.sock"}}).Err == "" {
				return
			}
			if i == 300 {
				panic(fmt.Errorf("ctnet docker-plugin did not serve its socket in 30 s"))
			}
			time.Sleep(100 * time.Millisecond)
		}
	})
	if d.err != nil {
		panic(d.err)
	}
	defer b.drop(d.sb)
	info := d.run("info", "--format", "{{.ServerVersion}}")
	d.run("network", "create", "-d", "ctnet", "bnct")
	d.run("network", "create", "bnbr")
	fmt.Fprintf(w, "One dockerd %s in its own sandbox (defaults: userland proxy on, iptables on), with `ctnet docker-plugin` "+
		"started before it; networks `bnct` (`docker network create -d ctnet`) and `bnbr` (`docker network create`, Docker's bridge "+
		"driver), image `bn-busybox` imported from a tarball of busybox-static.\n\n", strings.TrimSpace(info.Out))

	nets := []string{"bnct", "bnbr", "bridge", "none"}
	label := map[string]string{"bnct": "ctnet driver (-d ctnet)", "bnbr": "Docker's bridge (user network)", "bridge": "Docker's default bridge", "none": "--network none"}
	for _, n := range nets {
		d.run("run", "--rm", "--network", n, "bn-busybox", "true") // warm up
	}
	runs := map[string]*series{}
	diff := map[string]*series{}
	for _, n := range nets {
		runs[n], diff[n] = &series{}, &series{}
	}
	for it := 0; it < b.n; it++ {
		var none time.Duration
		took := map[string]time.Duration{}
		for k := range nets {
			n := nets[(k+it)%len(nets)]
			took[n] = time.Duration(d.run("run", "--rm", "--network", n, "bn-busybox", "true").Ns)
			runs[n].addD(took[n])
		}
		none = took["none"]
		for _, n := range nets {
			diff[n].addD(took[n] - none)
		}
	}
	t := &table{head: []string{"network", "docker run --rm … true", "network share (minus --network none, paired)", "vs ctnet driver"}}
	for _, n := range nets {
		t.row(label[n], runs[n].cell(1), diff[n].cell(1), ratio(runs[n], runs["bnct"]))
	}
	fmt.Fprintf(w, "`docker run --rm --network NET bn-busybox true`, whole client process, ms, median (min–max), n = %d per cell, "+
		"the networks interleaved (order rotating).\n\n%s\n", b.n, t)

	// Published ports on each network.
	levels := []int{0, 100, 1000}
	if b.quick {
		levels = []int{0, 100}
	}
	tools := []*runner{
		{name: "bnct", sb: d.sb, cli: d.run, image: "bn-busybox"},
		{name: "bnbr", sb: d.sb, cli: d.run, image: "bn-busybox"},
	}
	defer func() {
		for _, tl := range tools {
			tl.removeAll()
		}
	}()
	type key struct {
		net, what string
		level     int
	}
	res := map[key]*series{}
	get := func(n, wh string, l int) *series {
		if res[key{n, wh, l}] == nil {
			res[key{n, wh, l}] = &series{}
		}
		return res[key{n, wh, l}]
	}
	type foot struct{ nftRules, nftElems, iptRules, proxies int }
	feet := map[int]foot{}
	filled := 0
	for li, level := range levels {
		for filled < level {
			k := filled / 100
			r := fmt.Sprintf("%d-%d", 20000+100*k, 20099+100*k)
			tools[0].start(fmt.Sprintf("bnpc%d", k), "--network", "bnct", "-p", r+":"+r)
			r2 := fmt.Sprintf("%d-%d", 40000+100*k, 40099+100*k)
			tools[1].start(fmt.Sprintf("bnpb%d", k), "--network", "bnbr", "-p", r2+":"+r2)
			filled += 100
		}
		rules, elems := nftCounts(d.sb, "inet", "ctnet")
		proxies := 0
		for _, p := range d.sb.call(request{Op: "procs"}).Procs {
			if p.Comm == "docker-proxy" {
				proxies++
			}
		}
		feet[level] = foot{rules, elems, iptablesRules(d.sb), proxies}
		logf("docker plugin: %d ports published on each network", filled)
		for it := 0; it < b.n; it++ {
			for k := range tools {
				tl := tools[(k+it)%len(tools)]
				port := strconv.Itoa(30000 + 1000*li + 100*k + it)
				with := func() {
					get(tl.name, "run -p", level).addD(tl.start("bnq"+tl.name, "--network", tl.name, "-p", port+":80"))
					tl.remove("bnq" + tl.name)
				}
				without := func() {
					get(tl.name, "run", level).addD(tl.start("bnq0"+tl.name, "--network", tl.name))
					tl.remove("bnq0" + tl.name)
				}
				if it%2 == 0 {
					with()
					without()
				} else {
					without()
					with()
				}
				pr, nr := get(tl.name, "run -p", level), get(tl.name, "run", level)
				get(tl.name, "diff", level).add(pr.v[len(pr.v)-1] - nr.v[len(nr.v)-1])
			}
		}
	}
	pt := &table{head: []string{"ports already published (each network)", "network", "run -d -p", "vs 0 ports", "run -d (no -p)", "cost of -p (paired)"}}
	for _, l := range levels {
		for _, tl := range tools {
			rp := get(tl.name, "run -p", l)
			pt.row(strconv.Itoa(l), label[tl.name], rp.cell(1), ratio(rp, get(tl.name, "run -p", levels[0])), get(tl.name, "run", l).cell(1), get(tl.name, "diff", l).cell(1))
		}
		pt.row(strconv.Itoa(l), "Docker's bridge / ctnet driver", ratio(get("bnbr", "run -p", l), get("bnct", "run -p", l)), "",
			ratio(get("bnbr", "run", l), get("bnct", "run", l)), ratio(get("bnbr", "diff", l), get("bnct", "diff", l)))
	}
	ft := &table{head: []string{"ports published (each network)", "ctnet table rules", "ctnet set/map elements", "iptables rules (Docker's)", "docker-proxy processes"}}
	for _, l := range levels {
		f := feet[l]
		ft.row(strconv.Itoa(l), strconv.Itoa(f.nftRules), strconv.Itoa(f.nftElems), strconv.Itoa(f.iptRules), strconv.Itoa(f.proxies))
	}
	fmt.Fprintf(w, "`docker run -d --name N --network NET -p HOSTPORT:80 bn-busybox sleep 3600`, paired per iteration with the same start "+
		"without `-p` (order alternating), then `rm -f`; ms, median (min–max), n = %d per cell, the two networks interleaved. The ports "+
		"already published belong to other running containers on the same network, 100 each (`-p 20000-20099:20000-20099`, …).\n\n%s\n"+
		"What the published ports cost at rest in that sandbox (both networks' ports together: ctnet's in its maps, Docker's as "+
		"rules and proxies):\n\n%s\n", b.n, pt, ft)
}
