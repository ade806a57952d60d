package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/dockertest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// BenchmarkCNI measures ADD and DEL of one more namespace through libcni
// (as containerd and Podman call plugins) with 0, 100 and 1000 namespaces
// already attached to the same bridge: ctnet against the reference bridge
// plugin with host-local (isGateway, ipMasq), each also with one port
// mapping (ctnet's own; the reference chained with portmap).
//
//	go test -run '^$' -bench CNI -benchtime 1x -timeout 60m ./e2e
//
// CTNET_CNI_BENCH_LEVELS (default 0,100,1000) and CTNET_CNI_BENCH_N
// (samples per cell, default 10) change the grid. The timing runs in a
// worker inside the sandbox host (this test binary again): libcni's own
// exec of each plugin, no nsenter in the figures. Samples of the four cases
// are interleaved; each is ADD of a fresh namespace, then its DEL.
func BenchmarkCNI(b *testing.B) {
	s := sandbox.New(b)
	dockertest.PrivateRun(b, s)
	dir := b.TempDir()
	if err := os.Symlink(sandbox.Binary(b), filepath.Join(dir, "ctnet")); err != nil {
		b.Fatal(err)
	}
	for _, p := range []string{"bridge", "host-local", "portmap"} {
		if !fileExists(filepath.Join(cniPluginDir, p)) {
			b.Skipf("%s/%s is missing: scripts/deps.sh installs containernetworking-plugins", cniPluginDir, p)
		}
	}
	self, err := os.Executable()
	if err != nil {
		b.Fatal(err)
	}
	cmd := s.Host.Command(self, "-test.run", "^TestCNIBenchWorker$", "-test.timeout", "0")
	cmd.Env = append(s.Env(), "CTNET_CNI_BENCH_WORKER="+dir)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		b.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	var cells []benchCell
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), "CNIBENCH "); ok {
			var c benchCell
			if err := json.Unmarshal([]byte(line), &c); err != nil {
				b.Fatal(err)
			}
			cells = append(cells, c)
			b.Logf("%d attached, %s: ADD %.2f ms, DEL %.2f ms (median of %d)", c.Level, c.Case, median(c.Add), median(c.Del), len(c.Add))
		} else if strings.HasPrefix(sc.Text(), "FILL ") {
			b.Log(sc.Text())
		}
	}
	if err := cmd.Wait(); err != nil {
		b.Fatalf("worker: %v", err)
	}
	// On stdout too: the benchmark's log is cut when long.
	fmt.Println(benchTable(cells))
	for _, c := range cells {
		unit := strings.NewReplacer(" ", "", "+", "-").Replace(fmt.Sprintf("add-ms/%s@%d", c.Case, c.Level))
		b.ReportMetric(median(c.Add), unit)
	}
}

type benchCell struct {
	Level    int
	Case     string
	Add, Del []float64 // ms
}

var benchCases = []string{"ctnet", "bridge+host-local", "ctnet -p", "bridge+host-local+portmap -p"}

// benchTable is the markdown table of the cells: medians (min–max) and the
// reference's ratio to ctnet.
func benchTable(cells []benchCell) string {
	by := map[string]benchCell{}
	var levels []int
	for _, c := range cells {
		by[fmt.Sprint(c.Level, c.Case)] = c
		if !slices.Contains(levels, c.Level) {
			levels = append(levels, c.Level)
		}
	}
	cell := func(v []float64) string {
		return fmt.Sprintf("%.2f (%.2f–%.2f)", median(v), slices.Min(v), slices.Max(v))
	}
	var sb strings.Builder
	for _, op := range []string{"ADD", "DEL"} {
		fmt.Fprintf(&sb, "\n%s, ms, median (min–max)\n\n| attached | ctnet | bridge+host-local | ratio | ctnet -p | bridge+host-local+portmap -p | ratio |\n|---|---|---|---|---|---|---|\n", op)
		for _, l := range levels {
			fmt.Fprintf(&sb, "| %d |", l)
			for _, pair := range [][2]string{{benchCases[0], benchCases[1]}, {benchCases[2], benchCases[3]}} {
				c, r := by[fmt.Sprint(l, pair[0])], by[fmt.Sprint(l, pair[1])]
				cv, rv := c.Add, r.Add
				if op == "DEL" {
					cv, rv = c.Del, r.Del
				}
				if len(cv) == 0 || len(rv) == 0 {
					sb.WriteString(" | | |")
					continue
				}
				fmt.Fprintf(&sb, " %s | %s | %.2f× |", cell(cv), cell(rv), median(rv)/median(cv))
			}
			sb.WriteString("\n")
		}
	}
	return sb.String()
}

// TestCNIBenchWorker is BenchmarkCNI's worker, run by it inside the sandbox
// host; on its own it does nothing.
func TestCNIBenchWorker(t *testing.T) {
	dir := os.Getenv("CTNET_CNI_BENCH_WORKER")
	if dir == "" {
		t.Skip("BenchmarkCNI's worker")
	}
	levels := []int{0, 100, 1000}
	if v := os.Getenv("CTNET_CNI_BENCH_LEVELS"); v != "" {
		levels = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(f)
			if err != nil {
				t.Fatal(err)
			}
			levels = append(levels, n)
		}
	}
	n := 10
	if v := os.Getenv("CTNET_CNI_BENCH_N"); v != "" {
		n, _ = strconv.Atoi(v)
	}
	nsDir, data := "/run/cnibench/ns", "/run/cnibench/host-local"
	for _, d := range []string{nsDir, data} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cfg := libcni.NewCNIConfigWithCacheDir([]string{dir, cniPluginDir}, "/run/cnibench/cache", nil)
	list := func(name string, plugins ...string) *libcni.NetworkConfigList {
		b := fmt.Sprintf(`{"cniVersion":"1.0.0","name":%q,"plugins":[%s]}`, name, strings.Join(plugins, ","))
		l, err := libcni.NetworkConfFromBytes([]byte(b))
		if err != nil {
			t.Fatalf("%v\n%s", err, b)
		}
		return l
	}
	// ctnet without its embedded resolver (the reference has none).
	ctnetConf := `{"type":"ctnet","network":"bench","subnet":"10.100.0.0/16","bridge":"ctbench0",
		"dns":{"nameservers":["203.0.113.1"]},"capabilities":{"portMappings":true}}`
	refConf := fmt.Sprintf(`{"type":"bridge","bridge":"refbench0","isGateway":true,"ipMasq":true,
		"ipam":{"type":"host-local","dataDir":%q,"ranges":[[{"subnet":"10.101.0.0/16"}]]}}`, data)
	lists := map[string]*libcni.NetworkConfigList{
		benchCases[0]: list("ctbench", ctnetConf),
		benchCases[1]: list("refbench", refConf),
		benchCases[2]: list("ctbench", ctnetConf),
		benchCases[3]: list("refbench", refConf, `{"type":"portmap","capabilities":{"portMappings":true}}`),
	}
	ctx := context.Background()
	seq := 0
	attach := func(l *libcni.NetworkConfigList, port int) (rt *libcni.RuntimeConf, add time.Duration) {
		seq++
		path := filepath.Join(nsDir, fmt.Sprintf("ns%d", seq))
		if err := newNetns(path); err != nil {
			t.Fatal(err)
		}
		rt = &libcni.RuntimeConf{ContainerID: fmt.Sprintf("bench%d", seq), NetNS: path, IfName: "eth0", CapabilityArgs: map[string]any{}}
		if port != 0 {
			rt.CapabilityArgs["portMappings"] = []map[string]any{{"hostPort": port, "containerPort": 80, "protocol": "tcp"}}
		}
		start := time.Now()
		if _, err := cfg.AddNetworkList(ctx, l, rt); err != nil {
			t.Fatalf("ADD %s: %v", l.Name, err)
		}
		return rt, time.Since(start)
	}
	attached := 0
	for _, level := range levels {
		start := time.Now()
		for ; attached < level; attached++ {
			attach(lists[benchCases[0]], 0)
			attach(lists[benchCases[1]], 0)
		}
		fmt.Printf("FILL to %d: %s\n", level, time.Since(start).Round(time.Millisecond))
		cells := map[string]*benchCell{}
		for _, c := range benchCases {
			cells[c] = &benchCell{Level: level, Case: c}
		}
		for i := range n {
			for j := range benchCases {
				c := benchCases[(i+j)%len(benchCases)] // rotate the order
				port := 0
				if strings.HasSuffix(c, "-p") {
					port = 30000 + seq
				}
				rt, add := attach(lists[c], port)
				start := time.Now()
				if err := cfg.DelNetworkList(ctx, lists[c], rt); err != nil {
					t.Fatalf("DEL %s: %v", c, err)
				}
				del := time.Since(start)
				dropNetns(rt.NetNS)
				cells[c].Add = append(cells[c].Add, ms(add))
				cells[c].Del = append(cells[c].Del, ms(del))
			}
		}
		for _, c := range benchCases {
			b, _ := json.Marshal(cells[c])
			fmt.Printf("CNIBENCH %s\n", b)
		}
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// newNetns makes a network namespace pinned at path (as `ip netns add`),
// without a process in it.
func newNetns(path string) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return err
	}
	defer orig.Close()
	if err := os.WriteFile(path, nil, 0o444); err != nil {
		return err
	}
	if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
		return err
	}
	err = unix.Mount(fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()), path, "", unix.MS_BIND, "")
	if serr := netns.Set(orig); serr != nil {
		panic(serr) // this thread must not run anything else
	}
	return err
}

func dropNetns(path string) {
	unix.Unmount(path, unix.MNT_DETACH)
	os.Remove(path)
}
