package ocirt_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/image/imagetest"
	"github.com/ctnet/ctnet/internal/namespace"
	"github.com/ctnet/ctnet/internal/ocirt"
)

const nsEnv = "CTNET_RT_TEST_PRIVATE_MNT"

// TestMain runs the monitor or the in-container helper when asked to, and
// otherwise re-executes the tests in a private mount namespace so that no
// overlay, bind or nsfs mount of theirs reaches the machine's, and in a
// network namespace of their own, so that a container on the "host"
// network (NetNSPath "") shares a throwaway namespace, never the machine's.
func TestMain(m *testing.M) {
	ocirt.MaybeRunMonitor(nil)
	if os.Geteuid() == 0 && os.Getenv(nsEnv) == "" {
		self, err := os.Executable()
		if err == nil {
			if unshare, err := lookPath("unshare"); err == nil {
				args := append([]string{"unshare", "--mount", "--propagation", "private", "--net", "--", self}, os.Args[1:]...)
				err = syscall.Exec(unshare, args, append(os.Environ(), nsEnv+"=1"))
				fmt.Fprintln(os.Stderr, "re-exec in a private mount namespace:", err)
				os.Exit(1)
			}
		}
	}
	code := m.Run()
	if helpers.dir != "" {
		os.RemoveAll(helpers.dir)
	}
	os.Exit(code)
}

// helpers are the static programs of testdata/, built once per test binary.
var helpers struct {
	sync.Mutex
	dir   string
	built map[string]error
}

// helperDir builds testdata/<name> (CGO_ENABLED=0) and returns a directory
// holding only that binary, to be mounted into containers.
func helperDir(t *testing.T, name string) string {
	t.Helper()
	helpers.Lock()
	defer helpers.Unlock()
	if helpers.dir == "" {
		d, err := os.MkdirTemp("", "ocirt-helpers-")
		if err != nil {
			t.Fatal(err)
		}
		helpers.dir, helpers.built = d, map[string]error{}
	}
	dir := filepath.Join(helpers.dir, name)
	err, done := helpers.built[name]
	if !done {
		gobin, lerr := exec.LookPath("go")
		if lerr != nil {
			t.Skip("needs the go command to build the static in-container helpers")
		}
		build := exec.Command(gobin, "build", "-o", filepath.Join(dir, name), "./testdata/"+name)
		build.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, berr := build.CombinedOutput(); berr != nil {
			err = fmt.Errorf("build helper %s: %s %v", name, out, berr)
		}
		helpers.built[name] = err
	}
	if err != nil {
		t.Fatal(err)
	}
	return dir
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name), nil
		}
	}
	return "", os.ErrNotExist
}

type env struct {
	rt    *ocirt.Runtime
	img   image.Image // busybox, imported
	netns string      // a fresh network namespace made for the test
	dir   string
}

func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: containers need namespaces, mounts and cgroups")
	}
	if os.Getenv(nsEnv) == "" {
		t.Skip("needs the private mount namespace TestMain sets up (unshare missing?)")
	}
}

func newEnv(t *testing.T, binary string) *env {
	t.Helper()
	needRoot(t)
	dir := t.TempDir()
	rt, err := ocirt.New(binary, filepath.Join(dir, "run"), filepath.Join(dir, "data"))
	if err != nil {
		t.Skip(err)
	}
	s, err := image.Open(filepath.Join(dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	img, err := s.Import(bytes.NewReader(imagetest.BusyboxRootfsTar(t)), "busybox")
	if err != nil {
		t.Fatal(err)
	}
	return &env{rt: rt, img: img, netns: newNetNS(t, dir), dir: dir}
}

// newNetNS pins a new network namespace (nspin, as ctnet does); the
// machine's own namespace is never touched.
func newNetNS(t *testing.T, dir string) string {
	t.Helper()
	pin := filepath.Join(dir, "rt-netns")
	if err := namespace.Pin(pin); err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { namespace.Unpin(pin) })
	return pin
}

var seq int

func (e *env) spec(t *testing.T, args ...string) ocirt.Spec {
	seq++
	return ocirt.Spec{ID: fmt.Sprintf("rt-%s-%d", strings.ReplaceAll(strings.ToLower(t.Name()), "/", "-"), seq),
		Image: e.img, Args: args, NetNSPath: e.netns}
}

func (e *env) create(t *testing.T, s ocirt.Spec) *ocirt.Container {
	t.Helper()
	c, err := e.rt.Create(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := e.rt.Delete(s.ID, true); err != nil {
			t.Errorf("delete %s: %v", s.ID, err)
		}
	})
	return c
}

// run creates and runs a container in the foreground.
func (e *env) run(t *testing.T, s ocirt.Spec) (stdout, stderr string, code int) {
	t.Helper()
	stdout, stderr, code, err := e.tryRun(t, s)
	if err != nil {
		t.Fatal(err)
	}
	return stdout, stderr, code
}

// tryRun is run for containers that may fail to start.
func (e *env) tryRun(t *testing.T, s ocirt.Spec) (stdout, stderr string, code int, err error) {
	t.Helper()
	c := e.create(t, s)
	var o, er bytes.Buffer
	code, err = c.Run(context.Background(), nil, &o, &er)
	return o.String(), er.String(), code, err
}

// loUp sets lo up in the test's network namespace (runc leaves it down).
func loUp(t *testing.T, pin string) {
	t.Helper()
	ns, err := netns.GetFromPath(pin)
	if err != nil {
		t.Fatal(err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err == nil {
		err = h.LinkSetUp(lo)
	}
	if err != nil {
		t.Fatalf("lo up in %s: %v", pin, err)
	}
}

func (e *env) start(t *testing.T, s ocirt.Spec) {
	t.Helper()
	if err := e.create(t, s).Start(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func (e *env) exec(t *testing.T, id string, args ...string) (string, int) {
	t.Helper()
	var out bytes.Buffer
	code, err := e.rt.Exec(context.Background(), id, ocirt.ExecSpec{Args: args}, nil, &out, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	return out.String(), code
}
