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
	reps := 5
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

	type path struct {
		name           string
		sb             *sandbox
		client, server string
		ip             string
	}
	paths := []path{
		{"ctnet bridge", cs, ca, cb, ctnetIP},
		{"bare veth pair", bs, va, vb, "10.66.0.2"},
		{"bare bridge", bs, ba, bb, "10.67.0.3"},
	}
	res := map[string]*series{}
	mtu := map[string]string{}
	for _, p := range paths {
		res[p.name] = &series{}
		o := p.sb.must(request{Op: "exec", Netns: p.client, Argv: []string{"ip", "-o", "link", "show", "eth0"}}).Out
		if f := strings.Fields(o); len(f) > 4 {
			mtu[p.name] = f[4]
		}
	}
	for _, p := range paths {
		iperf(p.sb, p.client, p.server, p.ip, "1") // warm-up, not counted
	}
	for r := 0; r < reps; r++ {
		for k := range paths {
			p := paths[(k+r)%len(paths)]
			res[p.name].add(iperf(p.sb, p.client, p.server, p.ip, secs))
		}
	}
	t := &table{head: []string{"path", "MTU", "Gbit/s", "vs bare bridge", "vs bare veth"}}
	for _, p := range paths {
		t.row(p.name, mtu[p.name], res[p.name].cell(2), ratio(res[p.name], res["bare bridge"]), ratio(res[p.name], res["bare veth pair"]))
	}
	fmt.Fprintf(w, "iperf3, one TCP stream, %s s per run, median (min–max) over %d runs each, paths interleaved; "+
		"namespace to namespace, all inside sandboxes. Published ports (host address, 127.0.0.1) are not in ctnet yet.\n\n%s\n",
		secs, reps, t)
	b.drop(cs)
	b.drop(bs)
}

// iperf runs one iperf3 measurement and returns Gbit/s received.
func iperf(s *sandbox, client, server, ip, secs string) float64 {
	srv := s.must(request{Op: "spawn", Name: "iperf3-server", Netns: server, Argv: []string{"iperf3", "-s", "-1"}})
	defer s.call(request{Op: "kill", Pid: srv.Pid})
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
		r := s.call(request{Op: "exec", Netns: client, Argv: []string{"iperf3", "-c", ip, "-t", secs, "-J"}})
		j = result{}
		jerr := json.Unmarshal([]byte(r.Out), &j)
		if r.Err == "" && jerr == nil && j.Error == "" && j.End.SumReceived.BitsPerSecond > 0 {
			break
		}
		if try > 30 {
			panic(fmt.Errorf("iperf3 to %s: %s %v %s", ip, r.Err, jerr, tail(r.Out, 500)))
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
	t := &table{head: []string{"tool", "state", "processes left running", "total RSS (MB)"}}
	for _, m := range b.mem {
		total := 0
		var names []string
		count := map[string]int{}
		for _, p := range m.procs {
			total += p.RSSkB
			if count[p.Comm] == 0 {
				names = append(names, p.Comm)
			}
			count[p.Comm]++
		}
		var parts []string
		for _, n := range names {
			parts = append(parts, fmt.Sprintf("%s×%d", n, count[n]))
		}
		desc := strings.Join(parts, ", ")
		if desc == "" {
			desc = "none"
		}
		t.row(m.tool, m.state, desc, fmt.Sprintf("%.1f", float64(total)/1024))
	}
	fmt.Fprintf(&b.report, "Every process whose network namespace is the tool's sandbox, other than the benchmark's "+
		"own worker (VmRSS, shared pages counted in each process).\n\n%s\n", t)
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
