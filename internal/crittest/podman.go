package crittest

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ctnet/ctnet/internal/dockertest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// Podman is Debian's podman (4.3) in a sandbox with the CNI network backend:
// storage, run root, temporary files and events of its own, CNI plugins and
// configurations from the test's directories, containers' cgroups under a
// parent of its own. Every container goes with the test.
type Podman struct {
	Dir          string
	CgroupParent string
	t            testing.TB
	s            *sandbox.Sandbox
	env          []string
}

// No raising of limits: this machine kind lacks CAP_SYS_RESOURCE, and
// Podman's default nofile and nproc are above its hard limits.
const containersConf = `[containers]
default_ulimits = ["nofile=1024:1024", "nproc=4096:4096"]
[network]
network_backend = "cni"
cni_plugin_dirs = [%q, %q]
network_config_dir = %q
[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
runtime = "runc"
tmp_dir = %q
`

const storageConf = `[storage]
driver = "vfs"
graphroot = %q
runroot = %q
`

// NewPodman prepares podman in s with the CNI plugins of binDir (then
// pluginDir) and the network configurations of confDir; env is added to its
// environment, which the plugins inherit.
func NewPodman(t testing.TB, s *sandbox.Sandbox, binDir, pluginDir, confDir string, env ...string) *Podman {
	t.Helper()
	if _, err := os.Stat("/usr/bin/podman"); err != nil {
		t.Skipf("podman is not installed (./scripts/deps.sh installs it): %v", err)
	}
	dockertest.PrivateRun(t, s)
	n := seq.Add(1)
	p := &Podman{
		Dir:          filepath.Join(s.Dir, fmt.Sprintf("podman%d", n)),
		CgroupParent: fmt.Sprintf("/ctnet-podmantest-%d-%d", os.Getpid(), n),
		t:            t, s: s,
	}
	run := fmt.Sprintf("/run/podmantest%d", n)
	if err := os.MkdirAll(p.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{
		"containers.conf": fmt.Sprintf(containersConf, binDir, pluginDir, confDir, filepath.Join(p.Dir, "events.log"), filepath.Join(run, "tmp")),
		"storage.conf":    fmt.Sprintf(storageConf, filepath.Join(p.Dir, "storage"), filepath.Join(run, "storage")),
		"registries.conf": "",
	}
	for name, body := range files {
		if err := os.WriteFile(filepath.Join(p.Dir, name), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.env = append(append(os.Environ(),
		"CONTAINERS_CONF="+filepath.Join(p.Dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF="+filepath.Join(p.Dir, "storage.conf"),
		"CONTAINERS_REGISTRIES_CONF="+filepath.Join(p.Dir, "registries.conf"),
		"TMPDIR="+filepath.Join(p.Dir, "tmp")), env...)
	os.MkdirAll(filepath.Join(p.Dir, "tmp"), 0o700)
	t.Cleanup(func() {
		p.Podman("rm", "-a", "-f", "-t", "0")
		removeCgroupParent(p.CgroupParent)
	})
	return p
}

// Podman runs podman in the sandbox; its stdout, or an error with its output.
func (p *Podman) Podman(args ...string) (string, error) {
	argv := args
	if len(args) > 0 && (args[0] == "run" || args[0] == "create") {
		argv = append([]string{args[0], "--cgroup-parent", p.CgroupParent}, args[1:]...)
	}
	cmd := p.s.Host.Command("podman", argv...)
	cmd.Env = p.env
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("podman %s: %v: %s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), nil
}

// MustPodman is Podman that fails the test on error.
func (p *Podman) MustPodman(args ...string) string {
	p.t.Helper()
	out, err := p.Podman(args...)
	if err != nil {
		p.t.Fatal(err)
	}
	return out
}

// removeCgroupParent removes a runtime's cgroup parent, and the empty
// cgroups its containers left in it, from every hierarchy.
func removeCgroupParent(parent string) {
	dirs, _ := filepath.Glob(filepath.Join("/sys/fs/cgroup", "*", parent))
	dirs = append(dirs, filepath.Join("/sys/fs/cgroup", parent))
	for _, d := range dirs {
		for _, pattern := range []string{"*/*", "*"} {
			subs, _ := filepath.Glob(filepath.Join(d, pattern))
			for _, s := range subs {
				if st, err := os.Stat(s); err == nil && st.IsDir() {
					os.Remove(s)
				}
			}
		}
		os.Remove(d)
	}
}
