package ocirt_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	goruntime "runtime"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/image/imagetest"
	ocirt "github.com/ctnet/ctnet/internal/runtime"
)

const (
	nsEnv     = "CTNET_RT_TEST_PRIVATE_MNT"
	helperEnv = "CTNET_RT_HELPER"
)

// TestMain runs the monitor or the in-container helper when asked to, and
// otherwise re-executes the tests in a private mount namespace so that no
// overlay, bind or nsfs mount of theirs reaches the machine's.
func TestMain(m *testing.M) {
	ocirt.MaybeRunMonitor()
	if h := os.Getenv(helperEnv); h != "" {
		os.Exit(helper(h))
	}
	if os.Geteuid() == 0 && os.Getenv(nsEnv) == "" {
		self, err := os.Executable()
		if err == nil {
			if unshare, err := lookPath("unshare"); err == nil {
				args := append([]string{"unshare", "--mount", "--propagation", "private", "--", self}, os.Args[1:]...)
				err = syscall.Exec(unshare, args, append(os.Environ(), nsEnv+"=1"))
				fmt.Fprintln(os.Stderr, "re-exec in a private mount namespace:", err)
				os.Exit(1)
			}
		}
	}
	os.Exit(m.Run())
}

func lookPath(name string) (string, error) {
	for _, d := range []string{"/usr/bin", "/bin", "/usr/sbin", "/sbin"} {
		if _, err := os.Stat(filepath.Join(d, name)); err == nil {
			return filepath.Join(d, name), nil
		}
	}
	return "", os.ErrNotExist
}

// helper is a tiny static program run inside busybox containers: busybox's
// nc has no UNIX sockets. "listen:SOCK:FIFO" accepts one connection, tells
// the test it listens by writing to FIFO, and answers "pong:" + the message;
// "send:SOCK:MSG" sends MSG and prints the answer.
func helper(arg string) int {
	parts := strings.SplitN(arg, ":", 3)
	fail := func(err error) int { fmt.Fprintln(os.Stderr, "helper:", err); return 1 }
	if len(parts) != 3 {
		return fail(fmt.Errorf("bad arg %q", arg))
	}
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		return fail(err)
	}
	addr := &unix.SockaddrUnix{Name: parts[1]}
	switch parts[0] {
	case "listen":
		if err := unix.Bind(fd, addr); err != nil {
			return fail(err)
		}
		if err := unix.Listen(fd, 1); err != nil {
			return fail(err)
		}
		if err := os.WriteFile(parts[2], []byte("ready\n"), 0); err != nil {
			return fail(err)
		}
		c, _, err := unix.Accept(fd)
		if err != nil {
			return fail(err)
		}
		buf := make([]byte, 256)
		n, err := unix.Read(c, buf)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("got %s\n", buf[:n])
		if _, err := unix.Write(c, append([]byte("pong:"), buf[:n]...)); err != nil {
			return fail(err)
		}
		unix.Close(c)
	case "send":
		if err := unix.Connect(fd, addr); err != nil {
			return fail(err)
		}
		if _, err := unix.Write(fd, []byte(parts[2])); err != nil {
			return fail(err)
		}
		buf := make([]byte, 256)
		n, err := unix.Read(fd, buf)
		if err != nil {
			return fail(err)
		}
		fmt.Printf("%s\n", buf[:n])
	default:
		return fail(fmt.Errorf("bad mode %q", parts[0]))
	}
	return 0
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
	rt, err := ocirt.New(binary, filepath.Join(dir, "run"))
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

// newNetNS pins a new, empty network namespace on a throw-away thread; the
// machine's own namespace is never touched.
func newNetNS(t *testing.T, dir string) string {
	t.Helper()
	pin := filepath.Join(dir, "rt-netns")
	if err := os.WriteFile(pin, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		goruntime.LockOSThread() // never unlocked: the thread dies with its namespace
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- err
			return
		}
		errc <- unix.Mount(fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid()), pin, "", unix.MS_BIND, "")
	}()
	if err := <-errc; err != nil {
		t.Fatalf("new netns: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(pin, unix.MNT_DETACH) })
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
	c := e.create(t, s)
	var o, er bytes.Buffer
	code, err := c.Run(context.Background(), nil, &o, &er)
	if err != nil {
		t.Fatal(err)
	}
	return o.String(), er.String(), code
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
