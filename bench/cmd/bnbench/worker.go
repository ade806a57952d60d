package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// request is one line the coordinator sends to a worker.
type request struct {
	Op      string            `json:"op"`
	Argv    []string          `json:"argv,omitempty"`
	Env     []string          `json:"env,omitempty"`
	Stdin   string            `json:"stdin,omitempty"`
	Name    string            `json:"name,omitempty"`
	Netns   string            `json:"netns,omitempty"`
	Plugins []json.RawMessage `json:"plugins,omitempty"`
	Pid     int               `json:"pid,omitempty"`
}

// response is the worker's answer; Ns is the time the measured part took.
type response struct {
	Ns    int64     `json:"ns"`
	Out   string    `json:"out,omitempty"`
	Err   string    `json:"err,omitempty"`
	Path  string    `json:"path,omitempty"`
	Pid   int       `json:"pid,omitempty"`
	Procs []procRSS `json:"procs,omitempty"`
}

type procRSS struct {
	Pid   int    `json:"pid"`
	Comm  string `json:"comm"`
	RSSkB int    `json:"rss_kb"`
	PSSkB int    `json:"pss_kb"` // shared pages divided among their users
}

// worker runs inside a sandbox (its own network and mount namespace, started
// by unshare) and executes the coordinator's requests one at a time, so the
// timings it reports contain no nsenter and no pipe round trip.
type worker struct {
	dir     string // tmpfs, private to this mount namespace
	spawned map[int]*exec.Cmd
	cniRes  map[string]json.RawMessage
}

func runWorker(dir string) error {
	w := &worker{dir: dir, spawned: map[int]*exec.Cmd{}, cniRes: map[string]json.RawMessage{}}
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	os.MkdirAll(filepath.Join(dir, "ns"), 0o700)
	defer w.cleanup()
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	enc := json.NewEncoder(os.Stdout)
	for sc.Scan() {
		var r request
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			enc.Encode(response{Err: err.Error()})
			continue
		}
		enc.Encode(w.do(r))
	}
	return nil
}

func (w *worker) do(r request) response {
	switch r.Op {
	case "exec":
		return w.exec(r)
	case "spawn":
		return w.spawn(r)
	case "kill":
		return w.kill(r.Pid)
	case "mkns":
		p, err := w.mkns(r.Name)
		return response{Path: p, Err: errString(err)}
	case "rmns":
		t := time.Now()
		err := w.rmns(r.Name)
		return response{Ns: time.Since(t).Nanoseconds(), Err: errString(err)}
	case "cni-add", "cni-del":
		return w.cni(r)
	case "procs":
		return response{Procs: w.procs()}
	}
	return response{Err: "unknown op " + r.Op}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func (w *worker) command(r request) *exec.Cmd {
	argv := r.Argv
	if r.Netns != "" {
		argv = append([]string{"nsenter", "--net=" + r.Netns, "--"}, argv...)
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), r.Env...)
	if r.Stdin != "" {
		cmd.Stdin = strings.NewReader(r.Stdin)
	}
	return cmd
}

func (w *worker) exec(r request) response {
	cmd := w.command(r)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	t := time.Now()
	err := cmd.Run()
	d := time.Since(t)
	res := response{Ns: d.Nanoseconds(), Out: out.String()}
	if err != nil {
		res.Err = fmt.Sprintf("%s: %v", strings.Join(r.Argv, " "), err)
	}
	return res
}

func (w *worker) spawn(r request) response {
	cmd := w.command(r)
	log, err := os.Create(filepath.Join(w.dir, r.Name+".log"))
	if err != nil {
		return response{Err: err.Error()}
	}
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		log.Close()
		return response{Err: err.Error()}
	}
	log.Close()
	w.spawned[cmd.Process.Pid] = cmd
	return response{Pid: cmd.Process.Pid}
}

// kill stops a process this worker spawned: SIGTERM, then SIGKILL after 15 s.
func (w *worker) kill(pid int) response {
	cmd, ok := w.spawned[pid]
	if !ok {
		return response{Err: fmt.Sprintf("pid %d was not spawned here", pid)}
	}
	delete(w.spawned, pid)
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
	}
	return response{}
}

// mkns makes a network namespace with lo up, held by a bind mount on the
// worker's private tmpfs (no process per namespace).
func (w *worker) mkns(name string) (string, error) {
	p := filepath.Join(w.dir, "ns", name)
	f, err := os.Create(p)
	if err != nil {
		return "", err
	}
	f.Close()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	orig, err := netns.Get()
	if err != nil {
		return "", err
	}
	defer orig.Close()
	ns, err := netns.New()
	if err != nil {
		return "", fmt.Errorf("namespace %s: %w", name, err)
	}
	defer ns.Close()
	defer netns.Set(orig)
	if lo, err := netlink.LinkByName("lo"); err == nil {
		netlink.LinkSetUp(lo)
	}
	src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
	if err := unix.Mount(src, p, "", unix.MS_BIND, ""); err != nil {
		return "", fmt.Errorf("namespace %s: bind mount: %w", name, err)
	}
	return p, nil
}

// rmns drops a namespace: once unmounted nothing holds it and the kernel
// reclaims it (and the veth ends inside) in the background.
func (w *worker) rmns(name string) error {
	p := filepath.Join(w.dir, "ns", name)
	if err := unix.Unmount(p, unix.MNT_DETACH); err != nil && err != unix.EINVAL && err != unix.ENOENT {
		return fmt.Errorf("namespace %s: %w", name, err)
	}
	return os.Remove(p)
}

// cni runs a plugin chain as libcni does: ADD in order, each plugin seeing
// the previous result; DEL in reverse order with the cached ADD result.
func (w *worker) cni(r request) response {
	cmdName := "ADD"
	if r.Op == "cni-del" {
		cmdName = "DEL"
	}
	env := append(os.Environ(), "CNI_COMMAND="+cmdName, "CNI_CONTAINERID="+r.Name,
		"CNI_NETNS="+r.Netns, "CNI_IFNAME=eth0", "CNI_PATH=/usr/lib/cni")
	order := make([]int, len(r.Plugins))
	for i := range order {
		order[i] = i
		if cmdName == "DEL" {
			order[i] = len(r.Plugins) - 1 - i
		}
	}
	prev := w.cniRes[r.Name]
	t := time.Now()
	for _, i := range order {
		var conf map[string]any
		json.Unmarshal(r.Plugins[i], &conf)
		if prev != nil {
			conf["prevResult"] = json.RawMessage(prev)
		}
		stdin, _ := json.Marshal(conf)
		cmd := exec.Command(filepath.Join("/usr/lib/cni", conf["type"].(string)))
		cmd.Env = env
		cmd.Stdin = bytes.NewReader(stdin)
		var out, stderr bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &stderr
		if err := cmd.Run(); err != nil {
			return response{Err: fmt.Sprintf("cni %s %s: %v: %s %s", cmdName, conf["type"], err, out.String(), stderr.String())}
		}
		if cmdName == "ADD" {
			prev = json.RawMessage(bytes.TrimSpace(out.Bytes()))
		}
	}
	d := time.Since(t)
	if cmdName == "ADD" {
		w.cniRes[r.Name] = prev
	} else {
		delete(w.cniRes, r.Name)
	}
	return response{Ns: d.Nanoseconds(), Out: string(prev)}
}

// procs lists every process in this worker's network namespace except the
// worker itself and what it spawned: what the tools left running.
func (w *worker) procs() []procRSS {
	self, _ := os.Readlink("/proc/self/ns/net")
	ents, _ := os.ReadDir("/proc")
	var out []procRSS
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/net", pid)); err != nil || l != self {
			continue
		}
		out = append(out, procRSS{Pid: pid, Comm: procName(pid),
			RSSkB: statusKB(fmt.Sprintf("/proc/%d/status", pid), "VmRSS:"),
			PSSkB: statusKB(fmt.Sprintf("/proc/%d/smaps_rollup", pid), "Pss:")})
	}
	return out
}

// procName is the base of argv[0] (ctnet's monitor and DNS processes rename
// themselves there; comm would say "ctnet" for both), else comm.
func procName(pid int) string {
	cl, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if a0, _, _ := strings.Cut(string(cl), "\x00"); a0 != "" {
		return filepath.Base(a0)
	}
	comm, _ := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pid))
	return strings.TrimSpace(string(comm))
}

// statusKB reads one "Key: N kB" line of a /proc file.
func statusKB(path, key string) int {
	st, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(line, key) {
			if f := strings.Fields(line); len(f) > 1 {
				v, _ := strconv.Atoi(f[1])
				return v
			}
		}
	}
	return 0
}

// descendants returns every process below the given ones (by parent pid).
func descendants(roots []int) []int {
	children := map[int][]int{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			continue
		}
		// comm may hold spaces: the fields after its closing parenthesis are fixed.
		i := bytes.LastIndexByte(st, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(st[i+1:]))
		if len(f) < 2 {
			continue
		}
		if ppid, err := strconv.Atoi(f[1]); err == nil {
			children[ppid] = append(children[ppid], pid)
		}
	}
	var out []int
	seen := map[int]bool{}
	queue := append([]int(nil), roots...)
	for len(queue) > 0 {
		p := queue[0]
		queue = queue[1:]
		for _, c := range children[p] {
			if !seen[c] {
				seen[c] = true
				out = append(out, c)
				queue = append(queue, c)
			}
		}
	}
	return out
}

// cleanup stops what this worker started; any process still in the sandbox's
// network namespace was started from inside it (daemons' children) and goes
// too, with everything below it: containers live in namespaces of their own
// but are children of a shim or monitor that lives here, so nothing started
// from this sandbox outlives it.
func (w *worker) cleanup() {
	for pid := range w.spawned {
		w.kill(pid)
	}
	var roots []int
	for _, p := range w.procs() {
		roots = append(roots, p.Pid)
	}
	victims := append(descendants(roots), roots...)
	for _, pid := range victims {
		syscall.Kill(pid, syscall.SIGKILL)
	}
}
