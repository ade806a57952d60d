// Package dockertest runs a real dockerd (Debian's docker.io) inside a
// sandbox: the sandbox's network namespace, a private /run in its mount
// namespace (so containerd's sockets, the shims' and /run/docker/plugins stay
// inside), its own data root, exec root, pid file and socket, and container
// cgroups under a parent of its own. Daemon is the command line, for any
// harness (the benchmark's workers); Start runs one in a test's sandbox.
package dockertest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/image/imagetest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// The binaries of Debian's docker.io (the docker on PATH may be another).
const (
	DaemonPath = "/usr/sbin/dockerd"
	Client     = "/usr/bin/docker"
)

// Daemon is one dockerd's command line and files.
type Daemon struct {
	Data string // data root and config, on disk
	Run  string // exec root, socket, pid file: a directory only the sandbox sees
	// CgroupParent is where the containers' cgroups go ("" = Docker's
	// /docker).
	CgroupParent string
	// Containerd is the socket of a containerd of its own, as Debian's
	// docker.service has it ("" = dockerd starts and stops one itself).
	Containerd string
	Flags      []string // more dockerd flags
}

func (d Daemon) Socket() string { return filepath.Join(d.Run, "docker.sock") }
func (d Daemon) Host() string   { return "unix://" + d.Socket() }
func (d Daemon) config() string { return filepath.Join(d.Data, "daemon.json") }

// Prepare makes the data root and a config file of its own (so no
// /etc/docker/daemon.json of the machine applies), which also keeps the
// daemon's identity key off the machine's /etc/docker/key.json.
func (d Daemon) Prepare() error {
	if err := os.MkdirAll(d.Data, 0o700); err != nil {
		return fmt.Errorf("dockerd data root: %w", err)
	}
	cfg := fmt.Sprintf("{\"deprecated-key-path\": %q}\n", filepath.Join(d.Data, "key.json"))
	return os.WriteFile(d.config(), []byte(cfg), 0o600)
}

// Argv is dockerd's command line.
func (d Daemon) Argv() []string {
	argv := []string{DaemonPath,
		"--config-file", d.config(),
		"--data-root", filepath.Join(d.Data, "data"),
		"--exec-root", filepath.Join(d.Run, "exec"),
		"--pidfile", filepath.Join(d.Run, "docker.pid"),
		"-H", d.Host(),
		"--log-level", "warn"}
	if d.CgroupParent != "" {
		argv = append(argv, "--cgroup-parent", d.CgroupParent)
	}
	if d.Containerd != "" {
		argv = append(argv, "--containerd", d.Containerd)
	}
	return append(argv, d.Flags...)
}

// Docker is the client's command line for this daemon.
func (d Daemon) Docker(args ...string) []string {
	return append([]string{Client, "-H", d.Host()}, args...)
}

// WaitReady asks the daemon for its version through run (which runs a
// command inside the sandbox) until it answers, for up to timeout.
func (d Daemon) WaitReady(run func(argv ...string) (string, error), timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for {
		out, err := run(d.Docker("version", "--format", "{{.Server.Version}}")...)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("dockerd did not answer in %s: %v: %s", timeout, err, strings.TrimSpace(out))
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// Installed says why dockerd cannot run here, or nil.
func Installed() error {
	for _, p := range []string{DaemonPath, Client} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("docker.io is not installed (./scripts/deps.sh installs it): %w", err)
		}
	}
	return nil
}

// Dockerd is a dockerd running in a test's sandbox, with a containerd of its
// own that outlives its restarts (as Debian runs them: containerd.service and
// docker.service).
type Dockerd struct {
	Daemon
	Log  string // its output (and containerd's)
	t    testing.TB
	s    *sandbox.Sandbox
	cmd  *exec.Cmd
	ctrd *exec.Cmd
}

// containerdConfig keeps containerd off the machine's config, state and
// plugins it does not need.
const containerdConfig = `version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`

var seq atomic.Int64

// PrivateRun mounts a tmpfs on /run in the sandbox host's mount namespace,
// once: dockerd, containerd and the plugins they find live there, as on a
// real host, and nothing of the machine's /run is seen or touched.
func PrivateRun(t testing.TB, s *sandbox.Sandbox) {
	t.Helper()
	marker := filepath.Join(s.Dir, "private-run")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	s.Host.MustRun("mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", "/run")
	if err := os.WriteFile(marker, nil, 0o600); err != nil {
		t.Fatal(err)
	}
}

// New prepares a dockerd for s with flags added to its command line (Start
// runs it); it is stopped, with its containers, when the test ends.
func New(t testing.TB, s *sandbox.Sandbox, flags ...string) *Dockerd {
	t.Helper()
	if err := Installed(); err != nil {
		t.Skip(err)
	}
	PrivateRun(t, s)
	n := seq.Add(1)
	d := &Dockerd{
		Daemon: Daemon{
			Data:         filepath.Join(s.Dir, fmt.Sprintf("docker%d", n)),
			Run:          fmt.Sprintf("/run/dockertest%d", n),
			CgroupParent: fmt.Sprintf("/ctnet-dockertest-%d-%d", os.Getpid(), n),
			Containerd:   fmt.Sprintf("/run/dockertest%d/containerd/containerd.sock", n),
			Flags:        flags,
		},
		Log: filepath.Join(s.Dir, fmt.Sprintf("dockerd%d.log", n)),
		t:   t, s: s,
	}
	if err := d.Prepare(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		d.removeContainers()
		d.Stop()
		if d.ctrd != nil {
			d.ctrd.Process.Signal(syscall.SIGTERM)
			d.ctrd.Wait()
		}
		d.removeCgroups()
	})
	d.startContainerd()
	return d
}

func (d *Dockerd) startContainerd() {
	d.t.Helper()
	cfg := filepath.Join(d.Data, "containerd.toml")
	body := fmt.Sprintf(containerdConfig, filepath.Join(d.Data, "containerd"), filepath.Join(d.Run, "containerd", "state"), d.Containerd)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		d.t.Fatal(err)
	}
	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer log.Close()
	cmd := d.s.Host.Command("containerd", "--config", cfg, "--log-level", "warn")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start containerd: %v", err)
	}
	d.ctrd = cmd
	for i := 0; ; i++ {
		if _, err := d.s.Host.Run("test", "-S", d.Containerd); err == nil {
			return
		}
		if i == 600 {
			d.t.Fatalf("containerd did not serve %s in 60 s:\n%s", d.Containerd, d.tail(2000))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// Start runs the daemon (again, after Stop or Kill) and waits until it
// answers.
func (d *Dockerd) Start() {
	d.t.Helper()
	log, err := os.OpenFile(d.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		d.t.Fatal(err)
	}
	defer log.Close()
	argv := d.Argv()
	cmd := d.s.Host.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		d.t.Fatalf("start dockerd: %v", err)
	}
	d.cmd = cmd
	run := func(argv ...string) (string, error) { return d.s.Host.Run(argv[0], argv[1:]...) }
	if err := d.WaitReady(run, 90*time.Second); err != nil {
		d.t.Fatalf("%v\ndockerd log (tail):\n%s", err, d.tail(3000))
	}
}

func (d *Dockerd) tail(n int) string {
	b, _ := os.ReadFile(d.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// Docker runs the client and returns its stdout and stderr.
func (d *Dockerd) Docker(args ...string) (string, string, error) {
	argv := d.Daemon.Docker(args...)
	cmd := d.s.Host.Command(argv[0], argv[1:]...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	return o.String(), e.String(), err
}

// MustDocker runs the client and fails the test if it fails.
func (d *Dockerd) MustDocker(args ...string) string {
	d.t.Helper()
	o, e, err := d.Docker(args...)
	if err != nil {
		d.t.Fatalf("docker %s: %v\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, o, e)
	}
	return o
}

// Stop ends the daemon as its service manager does: SIGTERM, then SIGKILL
// after 30 s. Its containerd keeps running.
func (d *Dockerd) Stop() { d.signal(syscall.SIGTERM, 30*time.Second) }

// Kill ends the daemon with SIGKILL.
func (d *Dockerd) Kill() { d.signal(syscall.SIGKILL, 30*time.Second) }

func (d *Dockerd) signal(sig syscall.Signal, wait time.Duration) {
	if d.cmd == nil {
		return
	}
	// nsenter execs dockerd (entering network and mount namespaces needs
	// no fork).
	pid := d.cmd.Process.Pid
	syscall.Kill(pid, sig)
	done := make(chan struct{})
	go func() { d.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(wait):
		syscall.Kill(pid, syscall.SIGKILL)
		<-done
	}
	d.cmd = nil
}

// PID is dockerd's process id, 0 when it is not running.
func (d *Dockerd) PID() int {
	if d.cmd == nil {
		return 0
	}
	return d.cmd.Process.Pid
}

func (d *Dockerd) removeContainers() {
	if d.cmd == nil {
		return
	}
	out, _, err := d.Docker("ps", "-aq")
	if ids := strings.Fields(out); err == nil && len(ids) > 0 {
		d.Docker(append([]string{"rm", "-f"}, ids...)...)
	}
}

// removeCgroups removes the containers' cgroup parent in every hierarchy,
// after killing what is left in it (containers of a daemon killed with
// SIGKILL, whose shims are gone): all of it is this test's.
func (d *Dockerd) removeCgroups() {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", d.CgroupParent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", d.CgroupParent))
	for try := 0; try < 100; try++ {
		left := 0
		for _, dir := range dirs {
			filepath.WalkDir(dir, func(p string, e os.DirEntry, err error) error {
				if err == nil && !e.IsDir() && (e.Name() == "tasks" || e.Name() == "cgroup.procs") {
					b, _ := os.ReadFile(p)
					for _, f := range strings.Fields(string(b)) {
						var pid int
						if fmt.Sscan(f, &pid); pid > 0 {
							syscall.Kill(pid, syscall.SIGKILL)
						}
					}
				}
				return nil
			})
			removeTree(dir)
			if _, err := os.Stat(dir); err == nil {
				left++
			}
		}
		if left == 0 {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	d.t.Logf("dockertest: cgroup %s is still there", d.CgroupParent)
}

func removeTree(dir string) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range ents {
		if e.IsDir() {
			removeTree(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir)
}

// ImportBusybox imports a busybox root filesystem (imagetest's) as name.
func (d *Dockerd) ImportBusybox(name string) {
	d.t.Helper()
	tarball := filepath.Join(d.Data, "busybox.tar")
	b, err := LinkModes(imagetest.BusyboxRootfsTar(d.t))
	if err != nil {
		d.t.Fatal(err)
	}
	if err := os.WriteFile(tarball, b, 0o600); err != nil {
		d.t.Fatal(err)
	}
	d.MustDocker("import", "-c", "ENV PATH=/usr/sbin:/usr/bin:/sbin:/bin", tarball, name)
}

// LinkModes gives hard links the mode of their target: Docker and Podman apply a
// link's header mode to the shared inode (ctnet's unpacker ignores it).
func LinkModes(in []byte) ([]byte, error) {
	tr := tar.NewReader(bytes.NewReader(in))
	var out bytes.Buffer
	tw := tar.NewWriter(&out)
	modes := map[string]int64{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
		modes[h.Name] = h.Mode
		if h.Typeflag == tar.TypeLink {
			h.Mode = modes[h.Linkname]
		}
		if err := tw.WriteHeader(h); err != nil {
			return nil, err
		}
		if _, err := io.Copy(tw, tr); err != nil {
			return nil, err
		}
	}
	return out.Bytes(), tw.Close()
}
