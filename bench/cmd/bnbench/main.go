// Command bnbench measures ctnet side by side with Docker, the CNI reference
// plugins and netavark, each inside its own sandbox namespace, interleaved
// per iteration, and writes a markdown report. bench/run.sh is its front door.
//
//	bnbench run -base DIR -ctnet BIN -floor BIN -hello BIN [-quick] [-out FILE]
//	bnbench worker DIR    (internal: one sandbox's request loop)
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"
)

func main() {
	if len(os.Args) > 2 && os.Args[1] == "worker" {
		if err := runWorker(os.Args[2]); err != nil {
			fmt.Fprintln(os.Stderr, "worker:", err)
			os.Exit(1)
		}
		return
	}
	if len(os.Args) < 2 || os.Args[1] != "run" {
		fmt.Fprintln(os.Stderr, "usage: bnbench run -base DIR -ctnet BIN -floor BIN -hello BIN [-quick] [-out FILE]")
		os.Exit(2)
	}
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	b := &bench{}
	fs.StringVar(&b.base, "base", "", "temp dir for every sandbox (removed by run.sh)")
	fs.StringVar(&b.ctnet, "ctnet", "", "ctnet binary")
	fs.StringVar(&b.floor, "floor", "", "floor binary")
	fs.StringVar(&b.hello, "hello", "", "Go hello-world binary (process-start floor)")
	fs.StringVar(&b.out, "out", "RESULTS.md", "report file")
	fs.StringVar(&b.command, "command", "", "command line to quote in the report")
	fs.BoolVar(&b.quick, "quick", false, "short form: fewer levels and samples")
	levels := fs.String("levels", "", "containers already attached, comma separated (default 0,100,500,1000; quick 0,100)")
	fs.IntVar(&b.n, "n", 0, "samples per measurement (default 15; quick 5)")
	fs.StringVar(&b.only, "only", "", "comma separated sections to run (startup,floor-attach,create,ports,dataplane,docker,docker-plugin,containers,memory)")
	fs.Parse(os.Args[2:])
	if b.base == "" || b.ctnet == "" || b.floor == "" || b.hello == "" {
		fs.Usage()
		os.Exit(2)
	}
	if b.n == 0 {
		b.n = 15
		if b.quick {
			b.n = 5
		}
	}
	if *levels == "" {
		*levels = "0,100,500,1000"
		if b.quick {
			*levels = "0,100"
		}
	}
	for _, l := range strings.Split(*levels, ",") {
		v, err := strconv.Atoi(strings.TrimSpace(l))
		if err != nil {
			fmt.Fprintln(os.Stderr, "bad -levels:", err)
			os.Exit(2)
		}
		b.levels = append(b.levels, v)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP)
	go func() {
		s := <-sig
		fmt.Fprintf(os.Stderr, "bnbench: %v: closing sandboxes\n", s)
		b.closeAll()
		os.Exit(130)
	}()
	code := b.runAll()
	b.closeAll()
	os.Exit(code)
}

type bench struct {
	base, ctnet, floor, hello, out, command, only string
	quick                                         bool
	levels                                        []int
	n                                             int

	sandboxes []*sandbox
	dock      *dockerd
	mem       []memRow
	machine   string
	report    strings.Builder
	failures  []string
	start     time.Time
}

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "%s "+format+"\n", append([]any{time.Now().Format("15:04:05")}, a...)...)
}

func (b *bench) sandbox(name string, privateRun bool) *sandbox {
	s, err := startSandbox(b.base, "bn-"+name, privateRun)
	if err != nil {
		panic(err)
	}
	b.sandboxes = append(b.sandboxes, s)
	return s
}

// drop closes a sandbox early, so memory and links go before the next section.
func (b *bench) drop(s *sandbox) {
	s.close()
}

func (b *bench) closeAll() {
	for i := len(b.sandboxes) - 1; i >= 0; i-- {
		b.sandboxes[i].close()
	}
}

func (b *bench) wants(name string) bool {
	if b.only == "" {
		return true
	}
	for _, s := range strings.Split(b.only, ",") {
		if s == name {
			return true
		}
	}
	return false
}

// section runs one part of the benchmark; a failure is reported and the
// next part still runs.
func (b *bench) section(name, title string, f func()) {
	if !b.wants(name) {
		return
	}
	logf("== %s", title)
	fmt.Fprintf(&b.report, "\n## %s\n\n", title)
	func() {
		defer func() {
			if r := recover(); r != nil {
				msg := fmt.Sprint(r)
				b.failures = append(b.failures, title+": "+firstLine(msg))
				fmt.Fprintf(&b.report, "\n**Failed:** `%s`\n", strings.ReplaceAll(msg, "\n", " ⏎ "))
				logf("!! %s failed: %s", title, msg)
			}
		}()
		f()
	}()
	b.flush()
}

func firstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

func (b *bench) runAll() int {
	b.start = time.Now()
	machineInfo(b) // the load average before anything runs
	b.section("startup", "Process start: the floor of every whole-process figure", b.startup)
	b.section("floor-attach", "Attach and detach of one namespace", b.attachDetach)
	b.section("create", "network create / network rm", b.createRm)
	b.section("ports", "Published ports: one more port with 0, 100, 1000 already published", b.ports)
	b.section("dataplane", "Data plane (iperf3, TCP, one stream)", b.dataPlane)
	b.section("docker", "Docker: network overhead of a whole container", b.docker)
	b.section("docker-plugin", "Docker with ctnet's network driver (docker network create -d ctnet) against its own bridge", b.dockerPlugin)
	b.section("containers", "Memory with many containers running", b.containers)
	b.section("memory", "Memory left running (attach, idle daemons)", b.memory)
	b.flush()
	if len(b.failures) > 0 {
		logf("%d section(s) failed; see %s", len(b.failures), b.out)
		return 1
	}
	return 0
}

// flush writes the report so far (a partial report survives a later crash).
func (b *bench) flush() {
	var h strings.Builder
	h.WriteString("# ctnet benchmark results\n\n")
	h.WriteString(machineInfo(b))
	if len(b.failures) > 0 {
		h.WriteString("\n**Sections that failed:**\n\n")
		for _, f := range b.failures {
			h.WriteString("- " + f + "\n")
		}
	}
	os.WriteFile(b.out, []byte(h.String()+b.report.String()), 0o644)
}
