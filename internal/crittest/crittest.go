// Package crittest runs the container runtimes that call CNI plugins inside
// a test's sandbox: containerd (Debian's) with its CRI plugin, as a
// Kubernetes node runs it without the kubelet, driven by crictl; and Podman
// with its CNI backend. Each has the sandbox's network namespace, a private
// /run in its mount namespace (sockets, shims and the pods' /run/netns stay
// inside), root and state of its own, CNI plugins and configurations from the
// test's directories, and its containers' cgroups under a parent of its own.
package crittest

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/empty"
	"github.com/google/go-containerregistry/pkg/v1/mutate"
	"github.com/google/go-containerregistry/pkg/v1/tarball"

	"github.com/ctnet/ctnet/internal/dockertest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

// PauseImage is the sandbox image containerd is told to use; Start imports
// it, so nothing is pulled.
const PauseImage = "ctnet.test/pause:1"

// Containerd is one containerd with its CRI plugin in a sandbox.
type Containerd struct {
	Dir          string // root, config, log: on disk
	Socket       string // inside the sandbox's private /run
	CgroupParent string // the pods' cgroups
	Log          string
	t            testing.TB
	s            *sandbox.Sandbox
	cmd          *exec.Cmd
	crictl       string
}

const config = `version = 2
root = %q
state = %q
[grpc]
  address = %q
[plugins."io.containerd.internal.v1.opt"]
  path = %q
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This machine kind lacks CAP_SYS_RESOURCE: no OOM score below containerd's.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "native"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = %q
    conf_dir = %q
    max_conf_num = 1
`

var seq atomic.Int64

// Start runs containerd in s with the CNI plugins of binDir and the
// configurations of confDir, env added to its environment (the plugins
// inherit it); it imports PauseImage. Everything stops with the test.
func Start(t testing.TB, s *sandbox.Sandbox, crictl, binDir, confDir string, env ...string) *Containerd {
	t.Helper()
	if _, err := os.Stat("/usr/bin/containerd"); err != nil {
		t.Skipf("containerd is not installed (./scripts/deps.sh installs it): %v", err)
	}
	dockertest.PrivateRun(t, s)
	n := seq.Add(1)
	c := &Containerd{
		Dir:          filepath.Join(s.Dir, fmt.Sprintf("containerd%d", n)),
		Socket:       fmt.Sprintf("/run/crittest%d/containerd.sock", n),
		CgroupParent: fmt.Sprintf("/ctnet-crittest-%d-%d", os.Getpid(), n),
		t:            t, s: s, crictl: crictl,
	}
	c.Log = filepath.Join(c.Dir, "containerd.log")
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(c.Dir, "config.toml")
	body := fmt.Sprintf(config, filepath.Join(c.Dir, "root"), filepath.Join(filepath.Dir(c.Socket), "state"), c.Socket,
		filepath.Join(c.Dir, "opt"), PauseImage, binDir, confDir)
	if err := os.WriteFile(cfg, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	log, err := os.OpenFile(c.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := s.Host.Command("containerd", "--config", cfg, "--log-level", "info")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("start containerd: %v", err)
	}
	c.cmd = cmd
	t.Cleanup(c.stop)
	for i := 0; ; i++ {
		if _, err := c.Crictl("version"); err == nil {
			break
		}
		if i == 600 {
			t.Fatalf("containerd did not answer crictl in 60 s:\n%s", c.Tail(3000))
		}
		time.Sleep(100 * time.Millisecond)
	}
	c.importPause()
	return c
}

// Crictl runs crictl against this containerd; its stdout, or an error with
// its output.
func (c *Containerd) Crictl(args ...string) (string, error) {
	argv := append([]string{"--runtime-endpoint", "unix://" + c.Socket, "--image-endpoint", "unix://" + c.Socket, "--timeout", "60s"}, args...)
	cmd := c.s.Host.Command(c.crictl, argv...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("crictl %s: %v: %s%s", strings.Join(args, " "), err, o.String(), e.String())
	}
	return o.String(), nil
}

// MustCrictl is Crictl that fails the test on error.
func (c *Containerd) MustCrictl(args ...string) string {
	c.t.Helper()
	out, err := c.Crictl(args...)
	if err != nil {
		c.t.Fatalf("%v\ncontainerd log (tail):\n%s", err, c.Tail(3000))
	}
	return out
}

// Tail is the end of containerd's log.
func (c *Containerd) Tail(n int) string {
	b, _ := os.ReadFile(c.Log)
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// importPause imports the pause image, with ctr into the CRI plugin's
// namespace: the machine's static busybox, sleeping.
func (c *Containerd) importPause() {
	c.t.Helper()
	bb, err := os.ReadFile("/bin/busybox")
	if err != nil {
		c.t.Skipf("busybox-static is not installed (./scripts/deps.sh installs it): %v", err)
	}
	var layer bytes.Buffer
	tw := tar.NewWriter(&layer)
	tw.WriteHeader(&tar.Header{Name: "pause", Mode: 0o755, Size: int64(len(bb)), Typeflag: tar.TypeReg})
	tw.Write(bb)
	if err := tw.Close(); err != nil {
		c.t.Fatal(err)
	}
	l, err := tarball.LayerFromOpener(func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(layer.Bytes())), nil })
	if err != nil {
		c.t.Fatal(err)
	}
	img, err := mutate.AppendLayers(empty.Image, l)
	if err != nil {
		c.t.Fatal(err)
	}
	cf, err := img.ConfigFile()
	if err != nil {
		c.t.Fatal(err)
	}
	cf = cf.DeepCopy()
	cf.OS, cf.Architecture = "linux", runtime.GOARCH
	cf.Config = v1.Config{Entrypoint: []string{"/pause", "sleep", "2147483647"}}
	if img, err = mutate.ConfigFile(img, cf); err != nil {
		c.t.Fatal(err)
	}
	tag, err := name.NewTag(PauseImage)
	if err != nil {
		c.t.Fatal(err)
	}
	archive := filepath.Join(c.Dir, "pause.tar")
	f, err := os.Create(archive)
	if err != nil {
		c.t.Fatal(err)
	}
	err = tarball.Write(tag, img, f)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		c.t.Fatalf("write the pause image: %v", err)
	}
	out, err := c.s.Host.Run("ctr", "--address", c.Socket, "-n", "k8s.io", "images", "import", "--snapshotter", "native", archive)
	if err != nil {
		c.t.Fatalf("ctr images import: %v\n%s", err, out)
	}
}

// stop removes every pod, ends containerd and removes the pods' cgroups.
func (c *Containerd) stop() {
	if c.cmd == nil {
		return
	}
	if out, err := c.Crictl("pods", "-q"); err == nil {
		for _, id := range strings.Fields(out) {
			c.Crictl("stopp", id)
			c.Crictl("rmp", "-f", id)
		}
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		c.cmd.Process.Kill()
		<-done
	}
	c.cmd = nil
	removeCgroupParent(c.CgroupParent)
}
