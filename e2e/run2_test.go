package e2e

import (
	"bufio"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/ctnet/ctnet/internal/image/imagetest"
	"github.com/ctnet/ctnet/internal/sandbox"
)

func TestImagesLoadListRemove(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	docker := filepath.Join(s.Dir, "docker.tar")
	oci := filepath.Join(s.Dir, "oci.tar")
	os.WriteFile(docker, imagetest.BusyboxDockerArchive(t, "saved/busybox:1.0"), 0o644)
	os.WriteFile(oci, imagetest.BusyboxOCIArchive(t, "ocibox:2"), 0o644)
	if out := s.MustCtnet("image", "load", "-i", docker); !strings.Contains(out, "Loaded image: saved/busybox:1.0") {
		t.Errorf("load docker archive: %s", out)
	}
	if out := s.MustCtnet("image", "load", "-i", oci); !strings.Contains(out, "ocibox:2") {
		t.Errorf("load OCI archive: %s", out)
	}
	list := s.MustCtnet("images", "--format", "{{.Repository}}:{{.Tag}}")
	for _, want := range []string{"host:latest", "saved/busybox:1.0", "ocibox:2"} {
		if !strings.Contains(list, want+"\n") {
			t.Errorf("images lacks %s:\n%s", want, list)
		}
	}
	// The second layer's whiteout hides /etc/gone; its /etc/motd is there.
	if out := s.MustCtnet("run", "--rm", "ocibox:2", "sh", "-c", "ls /etc/gone 2>&1; cat /etc/motd"); !strings.Contains(out, "No such file") {
		t.Errorf("layers: %s", out)
	}
	// -P publishes what the image exposes (80/tcp) on a free host port.
	s.MustCtnet("run", "-d", "-P", "--name", "exp", "ocibox:2", "sleep", "60")
	if out := s.MustCtnet("port", "exp", "80"); !strings.HasPrefix(out, "0.0.0.0:") {
		t.Errorf("ctnet port exp 80: %q", out)
	}
	// Both archives hold the same image under two names: as Docker, rmi of
	// one name only untags it, even in use; the last name in use is refused
	// (a running container's even with -f).
	if out := s.MustCtnet("rmi", "ocibox:2"); out != "Untagged: ocibox:2\n" {
		t.Errorf("rmi of one of two names: %q", out)
	}
	id := strings.TrimSpace(s.MustCtnet("images", "-q", "saved/busybox:1.0"))
	for _, args := range [][]string{{"rmi", "saved/busybox:1.0"}, {"rmi", "-f", id}} {
		if _, e, err := s.Ctnet(args...); err == nil || !strings.Contains(e, "container exp") {
			t.Errorf("ctnet %v of an image a running container uses: %v %s", args, err, e)
		}
	}
	s.MustCtnet("rm", "-f", "exp")
	if out := s.MustCtnet("rmi", "saved/busybox:1.0"); !strings.HasPrefix(out, "Untagged: saved/busybox:1.0\nDeleted: sha256:") {
		t.Errorf("rmi of the last name: %q", out)
	}
	if _, e, err := s.Ctnet("run", "--rm", "ocibox:2", "true"); err == nil || !strings.Contains(e, "No such image: ocibox:2") {
		t.Errorf("run of a removed image: %v %s", err, e)
	}
}

func TestRunHostImage(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	out := s.MustCtnet("run", "--rm", "host", "ip", "a")
	if !strings.Contains(out, "eth0") || !strings.Contains(out, "inet 172.17.0.2/16") {
		t.Errorf("ctnet run --rm host ip a:\n%s", out)
	}
	if _, _, err := s.Ctnet("run", "--rm", "host", "touch", "/usr/ctnet-was-here"); err == nil {
		t.Error("the host image is writable")
	}
}

func TestNoNetworkUnixSocketAndIPC(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	shared := filepath.Join(s.Dir, "shared")
	os.Mkdir(shared, 0o777)
	s.MustCtnet("run", "-d", "--name", "server", "--network", "none", "-v", shared+":/mnt", "host",
		"socat", "UNIX-LISTEN:/mnt/sock,fork", "SYSTEM:echo pong-over-unix")
	var out string
	waitFor(t, func() bool {
		out, _, _ = s.Ctnet("run", "--rm", "--network", "none", "-v", shared+":/mnt:ro", "host", "socat", "-", "UNIX-CONNECT:/mnt/sock")
		return strings.Contains(out, "pong-over-unix")
	}, "an answer over the UNIX socket")

	s.MustCtnet("run", "-d", "--name", "shm", "--ipc", "shareable", "--network", "none", "host", "sh", "-c", "ipcmk -M 4096 && sleep 600")
	waitFor(t, func() bool {
		o, _, _ := s.Ctnet("run", "--rm", "--network", "none", "--ipc", "container:shm", "host", "ipcs", "-m")
		return strings.Contains(o, "4096")
	}, "the shared memory segment to be visible through --ipc container:shm")
	if o := s.MustCtnet("run", "--rm", "--network", "none", "host", "ipcs", "-m"); strings.Contains(o, "4096") {
		t.Errorf("a private IPC namespace sees the segment:\n%s", o)
	}
	s.MustCtnet("rm", "-f", "server", "shm")
	assertClean(t, s, "ctnet0")
}

func TestInteractiveTerminal(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	withBusybox(t, s)
	cmd := s.Host.Command(sandbox.Binary(t), "run", "-it", "--rm", "busybox", "sh")
	cmd.Env = append(s.Env(), "TERM=dumb", "PS1=ctnet# ")
	tty, err := pty.Start(cmd)
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	lines := make(chan string, 100)
	go func() {
		r := bufio.NewReader(tty)
		var buf strings.Builder
		for {
			b, err := r.ReadByte()
			if err != nil {
				close(lines)
				return
			}
			buf.WriteByte(b)
			if b == '\n' || strings.HasSuffix(buf.String(), "# ") {
				lines <- buf.String()
				buf.Reset()
			}
		}
	}()
	expect := func(want string) {
		t.Helper()
		deadline := time.After(10 * time.Second)
		var seen []string
		for {
			select {
			case l, ok := <-lines:
				if !ok {
					t.Fatalf("terminal closed before %q; saw %q", want, seen)
				}
				seen = append(seen, l)
				if strings.Contains(l, want) {
					return
				}
			case <-deadline:
				t.Fatalf("no %q on the terminal; saw %q", want, seen)
			}
		}
	}
	expect("# ")
	io.WriteString(tty, "echo sum-$((40+2))\r")
	expect("sum-42")
	// Line editing: the shell sees the line after the backspaces.
	io.WriteString(tty, "echo abX\x7fc\r")
	expect("abc\r\n")
	io.WriteString(tty, "exit 7\r")
	err = cmd.Wait()
	if cmd.ProcessState.ExitCode() != 7 {
		t.Errorf("exit status %d (%v), want 7", cmd.ProcessState.ExitCode(), err)
	}
}

// run and exec exit as Docker's do, with one-line messages, and containers
// get Docker's isolation: default capabilities, seccomp, no_new_privs on
// request, and the unprivileged-port and ping sysctls.
func TestRunExitStatusesAndSecurity(t *testing.T) {
	t.Parallel()
	s := sandbox.New(t)
	removeContainersAtEnd(t, s)
	withBusybox(t, s)
	status := func(args ...string) (int, string) {
		t.Helper()
		cmd := s.Host.Command(sandbox.Binary(t), args...)
		cmd.Env = s.Env()
		var e strings.Builder
		cmd.Stderr = &e
		cmd.Run()
		return cmd.ProcessState.ExitCode(), e.String()
	}
	s.MustCtnet("run", "-d", "--name", "up", "busybox", "sleep", "600")
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", "--rm", "busybox", "nosuch"}, 127, `exec: "nosuch": executable file not found in $PATH`},
		{[]string{"run", "--rm", "busybox", "/etc"}, 126, "/etc"},
		{[]string{"run", "--rm", "busybox", "/etc/passwd"}, 126, "/etc/passwd"},
		{[]string{"run", "--rm", "busybox", "sh", "-c", "exit 3"}, 3, ""},
		{[]string{"run", "--rm", "--network", "nosuch", "busybox", "true"}, 125, "nosuch"},
		{[]string{"run", "--rm", "--bogus", "busybox", "true"}, 125, "bogus"},
		{[]string{"run", "--rm", "--sysctl", "kernel.hostname=x", "busybox", "true"}, 125, "kernel.hostname"},
		{[]string{"run", "--rm", "--cap-add", "NOPE", "busybox", "true"}, 125, "NOPE"},
		{[]string{"run", "--rm", "--security-opt", "seccomp=/no/such/file", "busybox", "true"}, 125, "/no/such/file"},
		{[]string{"exec", "up", "nosuch"}, 127, `"nosuch"`},
		{[]string{"exec", "up", "/etc"}, 126, "/etc"},
		{[]string{"exec", "up", "sh", "-c", "exit 4"}, 4, ""},
		{[]string{"exec", "nobody", "true"}, 1, "nobody"},
	} {
		code, stderr := status(c.args...)
		if code != c.code || !strings.Contains(stderr, c.want) || (c.want != "" && (strings.Count(stderr, "\n") != 1 || !strings.HasPrefix(stderr, "Error: "))) {
			t.Errorf("ctnet %s: exit %d, stderr %q; want %d and one line naming %q", strings.Join(c.args, " "), code, stderr, c.code, c.want)
		}
	}
	// Default isolation: no new namespaces for anyone (seccomp), root's
	// capabilities are Docker's; unconfined and privileged lift it.
	if out, _, err := s.Ctnet("run", "--rm", "busybox", "busybox", "unshare", "-n", "true"); err == nil {
		t.Errorf("unshare -n in a default container succeeded: %s", out)
	}
	s.MustCtnet("run", "--rm", "--privileged", "busybox", "busybox", "unshare", "-n", "true")
	s.MustCtnet("run", "--rm", "--cap-add", "SYS_ADMIN", "--security-opt", "seccomp=unconfined", "busybox", "busybox", "unshare", "-n", "true")
	if out := s.MustCtnet("run", "--rm", "--security-opt", "no-new-privileges", "busybox", "grep", "NoNewPrivs", "/proc/self/status"); !strings.Contains(out, "1") {
		t.Errorf("no-new-privileges: %s", out)
	}
	if out := s.MustCtnet("run", "--rm", "busybox", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start", "/proc/sys/net/ipv4/ping_group_range"); strings.Fields(out)[0] != "0" || !strings.Contains(out, "2147483647") {
		t.Errorf("container sysctls: %q", out)
	}
	if out := s.MustCtnet("run", "--rm", "--sysctl", "net.ipv4.ip_unprivileged_port_start=1000", "busybox", "cat", "/proc/sys/net/ipv4/ip_unprivileged_port_start"); strings.TrimSpace(out) != "1000" {
		t.Errorf("--sysctl: %q", out)
	}
}
