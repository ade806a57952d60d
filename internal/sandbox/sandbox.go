// Package sandbox gives kernel-touching tests a throwaway "host": a network
// and mount namespace of its own with an upstream namespace as the outside
// world, and ctnet's state directories in a temp dir. Nothing is ever created
// in the machine's own network namespace; killing the holder processes (done
// in t.Cleanup) makes the kernel reclaim every link, address, route, nft table
// and mount the test made.
//
//	machine ns (untouched)
//	  sandbox host ns  eth0 203.0.113.2/24, 2001:db8:113::2/64, mtu 1400, default via .1
//	      │ veth
//	  upstream ns      eth0 203.0.113.1/24, 2001:db8:113::1/64; lo 198.51.100.1/32
//
// The sandbox host's /etc/resolv.conf names 203.0.113.1 (see UpstreamDNS).
//
// Every process the sandbox starts is born in a cgroup of its own (a child of
// the machine's cgroup2 root), and ctnet is told to attach its [::1] socket
// programs there (CTNET_CGROUP), so they never see the machine's processes.
package sandbox

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// Addresses of the sandbox's fixed topology.
const (
	HostAddr     = "203.0.113.2"
	UpstreamAddr = "203.0.113.1"
	FarAddr      = "198.51.100.1" // beyond the upstream router
	HostAddr6    = "2001:db8:113::2"
	Upstream6    = "2001:db8:113::1"
	UplinkMTU    = 1400
)

// NS is a namespace kept alive by a holder process the test started.
type NS struct {
	PID int
	t   testing.TB
	cg  *Cgroup // the sandbox's cgroup, where its processes are born; nil if none
}

// NetPath is the namespace's path, usable as `--netns`.
func (n *NS) NetPath() string { return fmt.Sprintf("/proc/%d/ns/net", n.PID) }

// Command builds a command that runs inside the namespace's network and mount
// namespaces.
func (n *NS) Command(name string, args ...string) *exec.Cmd {
	a := append([]string{"-t", strconv.Itoa(n.PID), "-n", "-m", "--", name}, args...)
	return n.cg.Into(exec.Command("nsenter", a...))
}

// Run runs a command in the namespace and returns its combined output.
func (n *NS) Run(name string, args ...string) (string, error) {
	out, err := n.Command(name, args...).CombinedOutput()
	return string(out), err
}

// MustRun is Run that fails the test on error.
func (n *NS) MustRun(name string, args ...string) string {
	n.t.Helper()
	out, err := n.Run(name, args...)
	if err != nil {
		n.t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// Ping asks addr for one ICMP echo reply from this namespace within 2 s,
// sending again each second: a first echo lost while the neighbour is
// resolved (or a switch learns) is not taken for unreachable.
func (n *NS) Ping(addr string) error {
	args := []string{"-c1", "-w2", addr}
	if strings.Contains(addr, ":") {
		args = append([]string{"-6"}, args...)
	}
	out, err := n.Run("ping", args...)
	if err != nil {
		return fmt.Errorf("ping %s from ns %d: %v\n%s", addr, n.PID, err, out)
	}
	return nil
}

// Sandbox is one test's host.
type Sandbox struct {
	t             testing.TB
	Host          *NS
	Upstream      *NS
	Dir           string // temp dir holding state directories
	Root, RunRoot string // RunRoot is a tmpfs seen only inside the sandbox
	// Cgroup is the cgroup2 directory every process of the sandbox is born
	// in ("" when the machine has no cgroup2 hierarchy).
	Cgroup string
	cg     *Cgroup
}

// New makes a sandbox host with its upstream, torn down when the test ends.
func New(t testing.TB) *Sandbox {
	t.Helper()
	RequireRoot(t)
	dir := t.TempDir()
	s := &Sandbox{t: t, Dir: dir, Root: filepath.Join(dir, "root"), RunRoot: filepath.Join(dir, "run")}
	// A fresh sysfs on /sys lets tools like brctl see the sandbox's links; the
	// cgroup tree is carried over so an OCI runtime still finds it.
	// The run root is a tmpfs, as /run is on a real host. The host's resolver
	// is the upstream namespace, so no DNS query can leave the sandbox.
	cg := filepath.Join(dir, "cgroup")
	os.Mkdir(cg, 0o700)
	os.Mkdir(s.RunRoot, 0o700)
	resolv := filepath.Join(dir, "resolv.conf")
	os.WriteFile(resolv, []byte("nameserver "+UpstreamAddr+"\n"), 0o644)
	s.makeCgroup()
	s.Host = s.holder(nil, "unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount --rbind /sys/fs/cgroup "$1" && mount -t sysfs sysfs /sys && mount --move "$1" /sys/fs/cgroup &&
		mount -t tmpfs -o mode=0700 tmpfs "$2" && mount --bind "$3" /etc/resolv.conf && echo ready && exec sleep infinity`,
		"sh", cg, s.RunRoot, resolv)
	s.Upstream = s.holder(nil, "unshare", "--net", "--mount", "--propagation", "private", "--", "sh", "-c",
		`mount -t sysfs sysfs /sys && echo ready && exec sleep infinity`)
	// Runs before the holders are killed (cleanups run last-in first-out):
	// containers' monitors and the resolver were started in the sandbox
	// and would outlive it.
	t.Cleanup(s.killLeftovers)
	h, u := s.Host, s.Upstream
	h.MustRun("ip", "link", "add", "eth0", "mtu", strconv.Itoa(UplinkMTU), "type", "veth",
		"peer", "name", "eth0", "netns", strconv.Itoa(u.PID))
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "addr", "add", HostAddr + "/24", "dev", "eth0"},
		{"ip", "-6", "addr", "add", HostAddr6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "link", "set", "eth0", "up"},
		{"ip", "route", "add", "default", "via", UpstreamAddr},
		{"ip", "-6", "route", "add", "default", "via", Upstream6},
	} {
		h.MustRun(c[0], c[1:]...)
	}
	for _, c := range [][]string{
		{"ip", "link", "set", "lo", "up"},
		{"ip", "link", "set", "eth0", "mtu", strconv.Itoa(UplinkMTU)},
		{"ip", "addr", "add", UpstreamAddr + "/24", "dev", "eth0"},
		{"ip", "-6", "addr", "add", Upstream6 + "/64", "dev", "eth0", "nodad"},
		{"ip", "addr", "add", FarAddr + "/32", "dev", "lo"},
		{"ip", "link", "set", "eth0", "up"},
	} {
		u.MustRun(c[0], c[1:]...)
	}
	return s
}

// holder starts a process that keeps namespaces alive until the test ends.
// in, when set, is the namespace whose mount namespace the holder starts in.
func (s *Sandbox) holder(in *NS, name string, args ...string) *NS {
	s.t.Helper()
	if in != nil {
		args = append([]string{"-t", strconv.Itoa(in.PID), "-m", "--", name}, args...)
		name = "nsenter"
	}
	cmd := s.cg.Into(exec.Command(name, args...))
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		s.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start namespace holder: %v", err)
	}
	s.t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		s.t.Fatalf("namespace holder %s: %q %v\n%s", name, line, err, stderr.String())
	}
	return &NS{PID: cmd.Process.Pid, t: s.t, cg: s.cg}
}

// makeCgroup creates the sandbox's cgroup, removed (with whatever runtimes
// made below it) when the test ends, after every process in it is gone.
func (s *Sandbox) makeCgroup() {
	cg, err := NewCgroup("ctnet-test", filepath.Join(s.Dir, "cgroup2"))
	if errors.Is(err, ErrNoCgroup2) {
		s.t.Logf("%v", err)
		return
	}
	if err != nil {
		s.t.Fatal(err)
	}
	s.Cgroup, s.cg = cg.Dir, cg
	s.t.Cleanup(func() {
		if err := cg.Remove(); err != nil {
			s.t.Errorf("remove sandbox cgroup: %v", err)
		}
	})
}

// killLeftovers ends every process that runs in the sandbox's mount
// namespace (monitors, the resolver) and everything below them (containers),
// so nothing the test started outlives it.
func (s *Sandbox) killLeftovers() {
	mnt, err := os.Readlink(fmt.Sprintf("/proc/%d/ns/mnt", s.Host.PID))
	if err != nil {
		return
	}
	parent := map[int]int{}
	var roots []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == s.Host.PID {
			continue
		}
		if stat, err := os.ReadFile("/proc/" + e.Name() + "/stat"); err == nil {
			// pid (comm) state ppid …; comm may hold spaces, so cut after ')'.
			if f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+1:])); len(f) > 1 {
				parent[pid], _ = strconv.Atoi(f[1])
			}
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/mnt"); err == nil && l == mnt {
			roots = append(roots, pid)
		}
	}
	doomed := map[int]bool{}
	for _, r := range roots {
		doomed[r] = true
	}
	for changed := true; changed; {
		changed = false
		for pid, pp := range parent {
			if doomed[pp] && !doomed[pid] {
				doomed[pid], changed = true, true
			}
		}
	}
	for pid := range doomed {
		syscall.Kill(pid, syscall.SIGKILL)
	}
	// With their processes gone, removing the containers lets the OCI
	// runtime delete their cgroups and mounts.
	if binPath == "" {
		return
	}
	out, _, err := s.Ctnet("ps", "-aq", "--no-trunc")
	if ids := strings.Fields(out); err == nil && len(ids) > 0 {
		s.Ctnet(append([]string{"rm", "-f"}, ids...)...)
	}
}

// Netns makes a fresh, empty network namespace in the sandbox (a stand-in for
// a container's), kept until the test ends or Kill is called.
func (s *Sandbox) Netns() *NS {
	s.t.Helper()
	return s.holder(s.Host, "unshare", "--net", "--", "sh", "-c", "echo ready; exec sleep infinity")
}

// Kill ends a namespace's holder early, so the kernel drops the namespace.
func (n *NS) Kill() {
	if p, err := os.FindProcess(n.PID); err == nil {
		p.Kill()
		p.Wait()
	}
}

// Env is the environment for ctnet commands in this sandbox.
func (s *Sandbox) Env() []string {
	env := append(os.Environ(), "CTNET_ROOT="+s.Root, "CTNET_RUN_ROOT="+s.RunRoot)
	if s.Cgroup != "" {
		env = append(env, "CTNET_CGROUP="+s.Cgroup)
	}
	return env
}

// Ctnet runs the ctnet binary in the sandbox host and returns stdout, stderr.
func (s *Sandbox) Ctnet(args ...string) (string, string, error) {
	s.t.Helper()
	cmd := s.Host.Command(Binary(s.t), args...)
	cmd.Env = s.Env()
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// MustCtnet runs ctnet and fails the test if it fails.
func (s *Sandbox) MustCtnet(args ...string) string {
	s.t.Helper()
	o, e, err := s.Ctnet(args...)
	if err != nil {
		s.t.Fatalf("ctnet %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, o, e)
	}
	return o
}

var (
	buildOnce sync.Once
	binPath   string
	binDir    string // the temp dir Binary built into, if it did
	buildErr  error
)

// RemoveBinary deletes the binary Binary built (call it from TestMain).
func RemoveBinary() {
	if binDir != "" {
		os.RemoveAll(binDir)
	}
}

// Binary builds cmd/ctnet once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		if p := os.Getenv("CTNET_TEST_BINARY"); p != "" {
			binPath = p
			return
		}
		dir, err := os.MkdirTemp("", "ctnet-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binDir, binPath = dir, filepath.Join(dir, "ctnet")
		out, err := exec.Command("go", "build", "-o", binPath, "github.com/ctnet/ctnet/cmd/ctnet").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build ctnet: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// RequireRoot skips a test that needs root when not running as root.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network and mount namespaces")
	}
}
