package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"time"
)

// createRm times `network create` and `network rm`, ctnet and docker
// interleaved.
func (b *bench) createRm() {
	w := &b.report
	s := b.sandbox("ctnet-create", false)
	env := b.ctnetEnv(s)
	ctnet := func(args ...string) time.Duration {
		return time.Duration(s.must(request{Op: "exec", Argv: append([]string{b.ctnet}, args...), Env: env}).Ns)
	}
	ctnet("network", "ls")
	d, derr := b.dockerd()
	cc, cr, dc, dr := &series{}, &series{}, &series{}, &series{}
	for it := 0; it < b.n; it++ {
		name := fmt.Sprintf("bnnet%d", it)
		cc.addD(ctnet("network", "create", name))
		if derr == nil {
			dc.addD(time.Duration(d.run("network", "create", name).Ns))
		}
		cr.addD(ctnet("network", "rm", name))
		if derr == nil {
			dr.addD(time.Duration(d.run("network", "rm", name).Ns))
		}
	}
	t := &table{head: []string{"operation", "ctnet", "docker", "docker/ctnet"}}
	t.row("network create (subnet chosen by the tool)", cc.cell(2), dc.cell(1), ratio(dc, cc))
	t.row("network rm", cr.cell(2), dr.cell(1), ratio(dr, cr))
	fmt.Fprintf(w, "ms, median (min–max), n = %d. Persistent state (ctnet's root, docker's data root) on disk, "+
		"run state on tmpfs.\n\n%s\n", b.n, t)
	if derr != nil {
		fmt.Fprintf(w, "No docker figures: %s\n", firstLine(derr.Error()))
	}
	b.drop(s)
}

// dataPlane compares TCP throughput between two namespaces through a ctnet
// bridge, a bare veth pair and a bare bridge made by hand, interleaved.
func (b *bench) dataPlane() {
	w := &b.report
	secs := "3"
	reps := 7
	if b.quick {
		secs, reps = "2", 2
	}
	cs := b.sandbox("ctnet-dp", false)
	env := b.ctnetEnv(cs)
	ca, cb := cs.mkns("bna"), cs.mkns("bnb")
	cs.must(request{Op: "exec", Argv: []string{b.ctnet, "network", "connect", "bridge", "--netns", ca}, Env: env})
	out := cs.must(request{Op: "exec", Argv: []string{b.ctnet, "network", "connect", "bridge", "--netns", cb}, Env: env}).Out
	f := strings.Fields(out)
	if len(f) < 2 {
		panic(fmt.Errorf("ctnet connect printed %q, want \"eth0 ADDR/LEN …\"", out))
	}
	ctnetIP := strings.Split(f[1], "/")[0]

	bs := b.sandbox("bare", false)
	va, vb, ba, bb := bs.mkns("bnva"), bs.mkns("bnvb"), bs.mkns("bnba"), bs.mkns("bnbb")
	// iproute2 takes a path (anything with a slash) after "netns".
	bs.exec("sh", "-c", `set -e
nsx() { ns=$1; shift; nsenter --net="$ns" "$@"; }
nsx "$1" ip link add eth0 type veth peer name eth0 netns "$2"
nsx "$1" ip addr add 10.66.0.1/24 dev eth0; nsx "$1" ip link set eth0 up
nsx "$2" ip addr add 10.66.0.2/24 dev eth0; nsx "$2" ip link set eth0 up
ip link add bnbr0 type bridge; ip addr add 10.67.0.1/24 dev bnbr0; ip link set bnbr0 up
ip link add bnva type veth peer name eth0 netns "$3"; ip link set bnva master bnbr0 up
ip link add bnvb type veth peer name eth0 netns "$4"; ip link set bnvb master bnbr0 up
nsx "$3" ip addr add 10.67.0.2/24 dev eth0; nsx "$3" ip link set eth0 up
nsx "$4" ip addr add 10.67.0.3/24 dev eth0; nsx "$4" ip link set eth0 up`, "sh", va, vb, ba, bb)

	paths := []dpPath{
		{name: "ctnet bridge, ns → ns", sb: cs, client: ca, server: cb, ip: ctnetIP},
		{name: "bare veth pair", sb: bs, client: va, server: vb, ip: "10.66.0.2"},
		{name: "bare bridge", sb: bs, client: ba, server: bb, ip: "10.67.0.3"},
	}
	var cleanups []func()
	defer func() {
		for i := len(cleanups) - 1; i >= 0; i-- {
			cleanups[i]()
		}
	}()
	pub, perr := b.publishedPaths(&cleanups)
	paths = append(paths, pub...)
	res := map[string]*series{}
	mtu := map[string]string{}
	for _, p := range paths {
		res[p.name] = &series{}
		if p.server == "" {
			continue
		}
		o := p.sb.must(request{Op: "exec", Netns: p.client, Argv: []string{"ip", "-o", "link", "show", "eth0"}}).Out
		if f := strings.Fields(o); len(f) > 4 {
			mtu[p.name] = f[4]
		}
	}
	for _, p := range paths {
		iperf(p, "1") // warm-up, not counted
	}
	for r := 0; r < reps; r++ {
		for k := range paths {
			p := paths[(k+r)%len(paths)]
			res[p.name].add(iperf(p, secs))
		}
	}
	t := &table{head: []string{"path", "MTU", "Gbit/s", "vs bare bridge", "vs bare veth", "vs the container's own address"}}
	for _, p := range paths {
		own := "—"
		if p.ref != "" {
			own = ratio(res[p.name], res[p.ref])
		}
		t.row(p.name, mtu[p.name], res[p.name].cell(2), ratio(res[p.name], res["bare bridge"]), ratio(res[p.name], res["bare veth pair"]), own)
	}
	fmt.Fprintf(w, "iperf3, one TCP stream, %s s per run, median (min–max) over %d runs each, paths interleaved; all inside sandboxes. "+
		"\"ns → ns\": between two namespaces attached to the bridge. \"host → …\": from the sandbox's host namespace to an `iperf3 -s` "+
		"in a container that publishes `-p 15201:5201` (ctnet: the `host` image; docker: `bn-busybox` chrooted into the host's files "+
		"mounted read-only), to the container's own address, to the published port via a host address (198.51.100.2 on a veth "+
		"in the sandbox), via 127.0.0.1 and via [::1] (ctnet: `-p [::1]:15202:5201` on the IPv4-only default network, served by "+
		"redirecting the socket; Docker: its proxy listens on [::]:15201).\n\n%s\n", secs, reps, t)
	if perr != nil {
		fmt.Fprintf(w, "Published-port paths missing: `%s`\n\n", strings.ReplaceAll(perr.Error(), "\n", " ⏎ "))
	}
	b.drop(cs)
	b.drop(bs)
}

// dpPath is one iperf3 path. With server set, an iperf3 server is started in
// that namespace per run; without, one is already listening (in a container).
type dpPath struct {
	name           string
	sb             *sandbox
	client, server string
	ip, port       string
	ref            string // path whose throughput this one is a ratio to
}

// hostAddr gives a sandbox a host address other than 127.0.0.1: a veth pair
// inside it, both ends up, 198.51.100.2/24 on one.
func hostAddr(s *sandbox) string {
	s.exec("sh", "-c", `ip link show bnup0 >/dev/null 2>&1 || {
ip link add bnup0 type veth peer name bnup1 && ip link set bnup1 up &&
ip addr add 198.51.100.2/24 dev bnup0 && ip link set bnup0 up; }`)
	return "198.51.100.2"
}

// publishedPaths starts an iperf3 server container that publishes
// 15201:5201 under ctnet and docker, and returns the host → container paths.
func (b *bench) publishedPaths(cleanups *[]func()) (paths []dpPath, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%v", r)
		}
	}()
	four := func(tool string, s *sandbox, ip, lo6port string) []dpPath {
		own := tool + ": host → container address"
		return []dpPath{
			{name: own, sb: s, ip: ip, port: "5201"},
			{name: tool + ": host → published port via host address", sb: s, ip: hostAddr(s), port: "15201", ref: own},
			{name: tool + ": host → published port via 127.0.0.1", sb: s, ip: "127.0.0.1", port: "15201", ref: own},
			{name: tool + ": host → published port via [::1]", sb: s, ip: "::1", port: lo6port, ref: own},
		}
	}
	crun, cs, cerr := b.ctnetRun("ctnet-pub")
	if cerr != nil {
		return nil, cerr
	}
	*cleanups = append(*cleanups, func() { b.drop(cs) })
	crun("run", "-d", "--name", "bniperf", "-p", "15201:5201", "-p", "[::1]:15202:5201", "host", "iperf3", "-s")
	*cleanups = append(*cleanups, func() {
		cs.call(request{Op: "exec", Argv: []string{b.ctnet, "rm", "-f", "bniperf"}, Env: b.ctnetEnv(cs)})
	})
	paths = append(paths, four("ctnet", cs, containerIP(crun("inspect", "bniperf").Out), "15202")...)

	d, derr := b.dockerd()
	if derr != nil {
		return paths, derr
	}
	d.run("run", "-d", "--name", "bniperf", "-p", "15201:5201", "-v", "/:/h:ro", "--tmpfs", "/h/tmp",
		"bn-busybox", "/bin/busybox", "chroot", "/h", "iperf3", "-s")
	*cleanups = append(*cleanups, func() {
		d.sb.call(request{Op: "exec", Argv: d.d.Docker("rm", "-f", "bniperf")})
	})
	ip := strings.TrimSpace(d.run("inspect", "-f", "{{.NetworkSettings.IPAddress}}", "bniperf").Out)
	paths = append(paths, four("docker", d.sb, ip, "15201")...)
	return paths, nil
}

// containerIP reads the first network address from `ctnet inspect` JSON.
func containerIP(inspect string) string {
	var j []struct {
		NetworkSettings struct {
			IPAddress string
			Networks  map[string]struct{ IPAddress string }
		}
	}
	if err := json.Unmarshal([]byte(inspect), &j); err != nil || len(j) == 0 {
		panic(fmt.Errorf("ctnet inspect: %v: %s", err, tail(inspect, 300)))
	}
	if ip := j[0].NetworkSettings.IPAddress; ip != "" {
		return ip
	}
	for _, n := range j[0].NetworkSettings.Networks {
		return n.IPAddress
	}
	panic("ctnet inspect: no address")
}

// iperf runs one iperf3 measurement and returns Gbit/s received.
func iperf(p dpPath, secs string) float64 {
	if p.server != "" {
		srv := p.sb.must(request{Op: "spawn", Name: "iperf3-server", Netns: p.server, Argv: []string{"iperf3", "-s", "-1"}})
		defer p.sb.call(request{Op: "kill", Pid: srv.Pid})
	}
	port := p.port
	if port == "" {
		port = "5201"
	}
	type result struct {
		Error string `json:"error"`
		End   struct {
			SumReceived struct {
				BitsPerSecond float64 `json:"bits_per_second"`
			} `json:"sum_received"`
		} `json:"end"`
	}
	var j result
	// iperf3 -J exits 0 even when it could not connect: retry until the
	// server listens.
	for try := 0; ; try++ {
		r := p.sb.call(request{Op: "exec", Netns: p.client, Argv: []string{"iperf3", "-c", p.ip, "-p", port, "-t", secs, "-J"}})
		j = result{}
		jerr := json.Unmarshal([]byte(r.Out), &j)
		if r.Err == "" && jerr == nil && j.Error == "" && j.End.SumReceived.BitsPerSecond > 0 {
			break
		}
		if try > 30 {
			panic(fmt.Errorf("iperf3 to %s:%s (%s): %s %v %s", p.ip, port, p.name, r.Err, jerr, tail(r.Out, 500)))
		}
		time.Sleep(100 * time.Millisecond)
	}
	return j.End.SumReceived.BitsPerSecond / 1e9
}

type memRow struct {
	tool, state string
	procs       []procRSS
}

// recordMem notes every process left in a sandbox's network namespace.
func (b *bench) recordMem(tool, state string, s *sandbox) {
	r := s.call(request{Op: "procs"})
	b.mem = append(b.mem, memRow{tool, state, r.Procs})
}

func (b *bench) memory() {
	t := &table{head: []string{"tool", "state", "processes left running", "RSS (MB)", "PSS (MB)"}}
	for _, m := range b.mem {
		desc, rss, pss := procSummary(m.procs)
		t.row(m.tool, m.state, desc, fmt.Sprintf("%.1f", rss), fmt.Sprintf("%.1f", pss))
	}
	fmt.Fprintf(&b.report, "Every process whose network namespace is the tool's sandbox, other than the benchmark's "+
		"own worker (VmRSS counts shared pages in each process; PSS divides them among their users). Published ports and "+
		"100 containers: see those sections.\n\n%s\n", t)
}

// startup times processes that do no work, so readers can judge the
// whole-process targets: the exec-to-exit floor of any Go binary here.
func (b *bench) startup() {
	s := b.sandbox("startup", false)
	defer b.drop(s)
	env := b.ctnetEnv(s)
	s.must(request{Op: "exec", Argv: []string{b.ctnet, "network", "ls"}, Env: env})
	cmds := []struct {
		name string
		argv []string
	}{
		{"/bin/true (C, dynamic)", []string{"/bin/true"}},
		{"Go hello-world (`bench/cmd/hello`)", []string{b.hello}},
		{"`floor -h` (Go, netlink linked)", []string{b.floor, "-h"}},
		{"`ctnet --help`", []string{b.ctnet, "--help"}},
		{"`ctnet network ls`", []string{b.ctnet, "network", "ls"}},
	}
	res := make([]series, len(cmds))
	n := 3 * b.n
	for it := 0; it < n; it++ {
		for k := range cmds {
			i := (k + it) % len(cmds)
			r := s.call(request{Op: "exec", Argv: cmds[i].argv, Env: env})
			// floor -h exits 2 after printing its usage: the time still counts.
			if r.Err != "" && i != 2 {
				panic(fmt.Errorf("%s: %s", cmds[i].name, r.Err))
			}
			res[i].addD(time.Duration(r.Ns))
		}
	}
	t := &table{head: []string{"process", "exec to exit, ms", "vs Go hello-world"}}
	for i, c := range cmds {
		t.row(c.name, res[i].cell(2), ratio(&res[i], &res[1]))
	}
	fmt.Fprintf(&b.report, "Processes that do no real work, exec to exit timed by the worker inside a sandbox, median (min–max), "+
		"n = %d, interleaved. This is the process-start floor under every \"whole process\" figure above and below.\n\n%s\n", n, t)
}

func sh(name string, args ...string) string {
	out, err := exec.Command(name, args...).Output()
	if err != nil {
		return "?"
	}
	return strings.TrimSpace(string(out))
}

func machineInfo(b *bench) string {
	if b.machine == "" {
		cpu := "?"
		if c, err := os.ReadFile("/proc/cpuinfo"); err == nil {
			for _, l := range strings.Split(string(c), "\n") {
				if strings.HasPrefix(l, "model name") {
					cpu = strings.TrimSpace(strings.SplitN(l, ":", 2)[1])
					break
				}
			}
		}
		var v []string
		for _, p := range []string{"docker.io", "containerd", "runc", "containernetworking-plugins", "netavark", "iperf3", "iptables"} {
			v = append(v, p+" "+sh("dpkg-query", "-W", "-f", "${Version}", p))
		}
		b.machine = fmt.Sprintf("| | |\n|---|---|\n| date | %s |\n| machine | %s, %s CPUs, %s |\n| kernel | %s |\n"+
			"| load at start | %s |\n| ctnet | %s |\n| go | %s |\n| peers | %s |\n| command | `%s` |\n",
			b.start.UTC().Format("2006-01-02 15:04 UTC"), cpu, sh("nproc"), memTotal(), sh("uname", "-sr"),
			sh("uptime"), sh("git", "-C", os.Getenv("CTNET_SRC"), "describe", "--always", "--dirty"),
			sh("go", "version"), strings.Join(v, ", "), b.command)
	}
	return b.machine + fmt.Sprintf("| load at end of the last section | %s (elapsed %v) |\n", sh("uptime"), time.Since(b.start).Round(time.Second))
}

func memTotal() string {
	c, _ := os.ReadFile("/proc/meminfo")
	for _, l := range strings.Split(string(c), "\n") {
		if strings.HasPrefix(l, "MemTotal:") {
			var kb int
			fmt.Sscan(strings.TrimPrefix(l, "MemTotal:"), &kb)
			return fmt.Sprintf("%.1f GiB RAM", float64(kb)/(1<<20))
		}
	}
	return "?"
}
