package ocirt_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/ocirt"
)

// layerOver returns e's image with one more layer on top, made by fill.
func (e *env) layerOver(t *testing.T, fill func(dir string)) image.Image {
	t.Helper()
	top := t.TempDir()
	fill(top)
	img := e.img
	img.Layers = append([]string{top}, e.img.Layers...)
	return img
}

func writeFile(t *testing.T, path, body string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestUserFromMergedLayers: names are looked up in the merged root, so a
// user only the top layer knows is found, for run and for exec.
func TestUserFromMergedLayers(t *testing.T) {
	e := newEnv(t, "runc")
	img := e.layerOver(t, func(dir string) {
		writeFile(t, filepath.Join(dir, "etc/passwd"), "root:x:0:0::/root:/bin/sh\napp:x:1000:1000::/:/bin/sh\n")
		writeFile(t, filepath.Join(dir, "etc/group"), "root:x:0:\napp:x:1000:\nextra:x:1500:app\n")
	})
	s := e.spec(t, "sh", "-c", "id -u; id -g; id -G")
	s.Image, s.User = img, "app"
	if out, errOut, code := e.run(t, s); out != "1000\n1000\n1000 1500\n" || code != 0 {
		t.Errorf("run --user app: %q %q %d", out, errOut, code)
	}

	d := e.spec(t, "sleep", "1000")
	d.Image = img
	e.start(t, d)
	var out bytes.Buffer
	code, err := e.rt.Exec(context.Background(), d.ID, ocirt.ExecSpec{Args: []string{"sh", "-c", "id -u; id -G"}, User: "app:extra"}, nil, &out, io.Discard)
	if err != nil || code != 0 || out.String() != "1000\n1500\n" {
		t.Errorf("exec --user app:extra: %q %d %v", out.String(), code, err)
	}
	_, err = e.rt.Exec(context.Background(), d.ID, ocirt.ExecSpec{Args: []string{"true"}, User: "nosuch"}, nil, io.Discard, io.Discard)
	if err == nil || !strings.Contains(err.Error(), `no user "nosuch" in the image's /etc/passwd`) {
		t.Errorf("exec --user nosuch: %v", err)
	}

	// a FIFO as the top layer's /etc/passwd: refused at once, nothing left
	fifo := e.layerOver(t, func(dir string) {
		os.MkdirAll(filepath.Join(dir, "etc"), 0o755)
		if err := syscall.Mkfifo(filepath.Join(dir, "etc/passwd"), 0o644); err != nil {
			t.Fatal(err)
		}
	})
	f := e.spec(t, "true")
	f.Image, f.User = fifo, "app"
	before, _ := e.rt.List()
	if _, err := e.rt.Create(context.Background(), f); err == nil || !strings.Contains(err.Error(), "not a regular file (a FIFO)") {
		t.Errorf("create with a FIFO /etc/passwd: %v", err)
	}
	if after, _ := e.rt.List(); len(after) != len(before) {
		t.Errorf("a refused create left %q", after)
	}
}

// TestWritableLayerOnDisk: what a container writes goes to the data
// directory, not the run directory; Delete removes both.
func TestWritableLayerOnDisk(t *testing.T) {
	e := newEnv(t, "runc")
	s := e.spec(t, "sh", "-c", "dd if=/dev/zero of=/big bs=1M count=3 2>/dev/null && echo logged")
	e.start(t, s)
	if code, err := e.rt.Wait(context.Background(), s.ID); err != nil || code != 0 {
		t.Fatalf("wait: %d %v", code, err)
	}
	runDir, dataDir := filepath.Join(e.dir, "run", s.ID), filepath.Join(e.dir, "data", s.ID)
	if fi, err := os.Stat(filepath.Join(dataDir, "upper/big")); err != nil || fi.Size() != 3<<20 {
		t.Errorf("the write is not in the writable layer on disk: %v", err)
	}
	if b, err := os.ReadFile(filepath.Join(dataDir, "container.log")); err != nil || string(b) != "logged\n" {
		t.Errorf("log on disk: %q %v", b, err)
	}
	if p := e.rt.LogPath(s.ID); p != filepath.Join(dataDir, "container.log") {
		t.Errorf("LogPath = %s", p)
	}
	var size int64
	rootfs := filepath.Join(runDir, "rootfs")
	filepath.WalkDir(runDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == rootfs {
			return filepath.SkipDir // the overlay's mount point
		}
		if fi, err := d.Info(); err == nil && fi.Mode().IsRegular() {
			size += fi.Size()
		}
		return nil
	})
	if size > 256<<10 {
		t.Errorf("the run directory holds %d bytes", size)
	}
	if err := e.rt.Delete(s.ID, false); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{runDir, dataDir} {
		if _, err := os.Stat(d); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s after delete: %v", d, err)
		}
	}
}

// TestPruneAfterReboot: a reboot empties the run directory; Leftovers and
// Prune find the layers on disk of containers the caller no longer has.
func TestPruneAfterReboot(t *testing.T) {
	e := newEnv(t, "runc")
	a, b := e.spec(t, "true"), e.spec(t, "true")
	e.run(t, a)
	e.create(t, b)
	// the reboot: mounts and the run directory go, the data directory stays
	for _, id := range []string{a.ID, b.ID} {
		exec.Command(e.rt.Binary, "--root", filepath.Join(e.dir, "run", "runc"), "delete", "--force", id).Run()
		if err := syscall.Unmount(filepath.Join(e.dir, "run", id, "rootfs"), syscall.MNT_DETACH); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(filepath.Join(e.dir, "run")); err != nil {
		t.Fatal(err)
	}
	rt, err := ocirt.New("runc", filepath.Join(e.dir, "run"), filepath.Join(e.dir, "data"))
	if err != nil {
		t.Fatal(err)
	}
	if ids, err := rt.List(); err != nil || len(ids) != 0 {
		t.Fatalf("bundles after the reboot: %q %v", ids, err)
	}
	liveA := func(id string) bool { return id == a.ID }
	if ids, err := rt.Leftovers(liveA); err != nil || strings.Join(ids, " ") != b.ID {
		t.Errorf("leftovers = %q %v, want %s", ids, err, b.ID)
	}
	if ids, err := rt.Prune(liveA); err != nil || strings.Join(ids, " ") != b.ID {
		t.Errorf("prune = %q %v, want %s", ids, err, b.ID)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "data", b.ID)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("pruned layer still there: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "data", a.ID, "upper")); err != nil {
		t.Errorf("a live container's layer was pruned: %v", err)
	}
	// a new container under a leftover's id is refused, not merged with it
	c := a
	c.ID = a.ID
	if _, err := rt.Create(context.Background(), c); err == nil || !strings.Contains(err.Error(), "is left from an earlier container") {
		t.Errorf("create over a leftover layer: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "data", a.ID, "upper")); err != nil {
		t.Errorf("a refused create removed the leftover layer: %v", err)
	}
	if ids, err := rt.Prune(func(string) bool { return false }); err != nil || strings.Join(ids, " ") != a.ID {
		t.Errorf("prune all = %q %v", ids, err)
	}
	if ents, _ := os.ReadDir(filepath.Join(e.dir, "data")); len(ents) != 0 {
		t.Errorf("data directory after prune: %v", ents)
	}
}

type exitCase struct {
	args []string
	code int
	msg  string // "" when the command runs
}

func exitCases() []exitCase {
	return []exitCase{
		{[]string{"nosuch"}, 127, `exec: "nosuch": executable file not found in $PATH`},
		{[]string{"/no/such/binary"}, 127, `exec: "/no/such/binary": stat /no/such/binary: no such file or directory`},
		{[]string{"./nosuch"}, 127, `exec: "./nosuch": stat ./nosuch: no such file or directory`},
		{[]string{"/etc/passwd/x"}, 127, `exec: "/etc/passwd/x": stat /etc/passwd/x: not a directory`},
		{[]string{"/etc"}, 126, `exec: "/etc": permission denied`},
		{[]string{"/etc/passwd"}, 126, `exec: "/etc/passwd": permission denied`},
		{[]string{"./bin/true"}, 0, ""},
		{[]string{"sh", "-c", "exit 3"}, 3, ""},
	}
}

func checkStartError(t *testing.T, what string, tc exitCase, code int, err error) {
	t.Helper()
	if tc.msg == "" {
		if err != nil || code != tc.code {
			t.Errorf("%s %q: code %d, %v; want %d", what, tc.args, code, err, tc.code)
		}
		return
	}
	var se *ocirt.StartError
	if !errors.As(err, &se) || se.Code != tc.code || ocirt.ExitCode(err) != tc.code || (code != tc.code && code != -1) {
		t.Errorf("%s %q: code %d, %T %v; want a StartError with %d", what, tc.args, code, err, err, tc.code)
		return
	}
	if !strings.HasSuffix(se.Msg, tc.msg) && !strings.HasPrefix(se.Msg, tc.msg) {
		t.Errorf("%s %q: message %q, want %q", what, tc.args, se.Msg, tc.msg)
	}
	for _, raw := range []string{"level=", "time=", `"msg"`, "runc run failed", "exec failed", "\n"} {
		if strings.Contains(err.Error(), raw) {
			t.Errorf("%s %q: raw runtime output %q in %q", what, tc.args, raw, err)
		}
	}
}

func TestExitStatuses(t *testing.T) {
	e := newEnv(t, "runc")
	t.Run("run", func(t *testing.T) {
		for _, tc := range exitCases() {
			out, errOut, code, err := e.tryRun(t, e.spec(t, tc.args...))
			checkStartError(t, "run", tc, code, err)
			if tc.msg != "" && (out != "" || errOut != "") {
				t.Errorf("run %q: the runtime's message leaked into the output: %q %q", tc.args, out, errOut)
			}
		}
	})
	t.Run("start", func(t *testing.T) {
		// each start runs a monitor: a few cases cover the codes
		cases := exitCases()
		for _, tc := range []exitCase{cases[0], cases[4], cases[5], cases[7]} {
			s := e.spec(t, tc.args...)
			err := e.create(t, s).Start(context.Background())
			if tc.msg == "" {
				code, werr := e.rt.Wait(context.Background(), s.ID)
				checkStartError(t, "start", tc, code, errors.Join(err, werr))
				continue
			}
			checkStartError(t, "start", tc, -1, err)
			if b, _ := os.ReadFile(e.rt.LogPath(s.ID)); len(b) > 0 {
				t.Errorf("start %q: the runtime's message is in the container's log: %q", tc.args, b)
			}
			if st, err := e.rt.State(s.ID); err != nil || st.Status != "exited" || st.ExitCode != tc.code {
				t.Errorf("start %q: state %+v %v", tc.args, st, err)
			}
		}
	})
	t.Run("exec", func(t *testing.T) {
		s := e.spec(t, "sleep", "1000")
		e.start(t, s)
		for _, tc := range exitCases() {
			var out, errOut bytes.Buffer
			code, err := e.rt.Exec(context.Background(), s.ID, ocirt.ExecSpec{Args: tc.args}, nil, &out, &errOut)
			checkStartError(t, "exec", tc, code, err)
			if tc.msg != "" && (out.Len() > 0 || errOut.Len() > 0) {
				t.Errorf("exec %q: the runtime's message leaked into the output: %q %q", tc.args, out.String(), errOut.String())
			}
		}
		// a signal ends an exec'd process: 128+n
		if code, err := e.rt.Exec(context.Background(), s.ID, ocirt.ExecSpec{Args: []string{"sh", "-c", "kill -TERM $$"}}, nil, io.Discard, io.Discard); err != nil || code != 128+int(syscall.SIGTERM) {
			t.Errorf("exec killed by TERM: %d %v", code, err)
		}
	})
	t.Run("signal", func(t *testing.T) {
		s := e.spec(t, "sleep", "1000")
		c := e.create(t, s)
		done := make(chan int, 1)
		go func() {
			code, _ := c.Run(context.Background(), nil, io.Discard, io.Discard)
			done <- code
		}()
		for {
			if st, _ := e.rt.State(s.ID); st.Running {
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		if err := e.rt.Kill(s.ID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if code := <-done; code != 128+int(syscall.SIGKILL) {
			t.Errorf("killed container: %d", code)
		}
	})
}

// TestStderrPassesWhileRunning: stderr is held only until the runtime has
// started the process; a process that writes and then waits is seen.
func TestStderrPassesWhileRunning(t *testing.T) {
	e := newEnv(t, "runc")
	s := e.spec(t, "sh", "-c", "echo ready >&2; read x; echo got $x")
	s.Interactive = true
	c := e.create(t, s)
	stdinR, stdinW := io.Pipe()
	errR, errW := io.Pipe()
	var out bytes.Buffer
	done := make(chan error, 1)
	go func() {
		code, err := c.Run(context.Background(), stdinR, &out, errW)
		if err == nil && code != 0 {
			err = fmt.Errorf("exit %d", code)
		}
		errW.Close()
		done <- err
	}()
	line, err := bufio.NewReader(errR).ReadString('\n')
	if err != nil || line != "ready\n" {
		t.Fatalf("stderr before stdin: %q %v", line, err)
	}
	io.WriteString(stdinW, "go\n")
	stdinW.Close()
	if err := <-done; err != nil || out.String() != "got go\n" {
		t.Errorf("run: %q %v", out.String(), err)
	}
}

// TestSysctls: in a container with its own network namespace a user other
// than root binds port 80 and pings without privileges (Docker's defaults);
// --sysctl overrides them; the host's network is left alone.
func TestSysctls(t *testing.T) {
	e := newEnv(t, "runc")
	loUp(t, e.netns)
	probe := helperDir(t, "probe")
	script := `cat /proc/sys/net/ipv4/ip_unprivileged_port_start /proc/sys/net/ipv4/ping_group_range
httpd -p 80 2>/dev/null && echo bound || echo bind-refused
/probe/probe ping 127.0.0.1 2>/dev/null || echo ping-refused
cat /proc/sys/kernel/shmmni /proc/sys/fs/mqueue/msg_max`
	hostPorts, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	hostPing, _ := os.ReadFile("/proc/sys/net/ipv4/ping_group_range")
	hostShm, _ := os.ReadFile("/proc/sys/kernel/shmmni")
	hostMq, _ := os.ReadFile("/proc/sys/fs/mqueue/msg_max")
	for _, tc := range []struct {
		name    string
		hostNet bool
		sysctls map[string]string
		want    string
	}{
		{name: "defaults", want: "0\n0\t2147483647\nbound\npong\n" + string(hostShm) + string(hostMq)},
		{name: "overridden", sysctls: map[string]string{
			"net.ipv4.ip_unprivileged_port_start": "1024", "net.ipv4.ping_group_range": "1 0",
			"kernel.shmmni": "1234", "fs.mqueue.msg_max": "42",
		}, want: "1024\n1\t0\nbind-refused\nping-refused\n1234\n42\n"},
		{name: "host network", hostNet: true, want: string(hostPorts) + string(hostPing)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.spec(t, "sh", "-c", script)
			s.User, s.Sysctls = "65534", tc.sysctls
			s.Mounts = []ocirt.Mount{{Source: probe, Destination: "/probe", ReadOnly: true}}
			if tc.hostNet {
				// the test binary's own throwaway namespace (see TestMain)
				s.NetNSPath = ""
			}
			out, errOut, code := e.run(t, s)
			if tc.hostNet {
				if !strings.HasPrefix(out, tc.want) {
					t.Errorf("host network: %q, want the host's %q", out, tc.want)
				}
				return
			}
			if out != tc.want || code != 0 {
				t.Errorf("%q %q %d, want %q", out, errOut, code, tc.want)
			}
		})
	}
	after, _ := os.ReadFile("/proc/sys/net/ipv4/ip_unprivileged_port_start")
	if !bytes.Equal(after, hostPorts) {
		t.Errorf("the host's ip_unprivileged_port_start changed: %q -> %q", hostPorts, after)
	}
}

func TestSysctlsRefused(t *testing.T) {
	e := newEnv(t, "runc")
	for _, tc := range []struct {
		key, value string
		hostNet    bool
		ipc        string
		want       string
	}{
		{key: "kernel.panic", value: "1", want: "not namespaced: it would change the host"},
		{key: "vm.swappiness", value: "1", want: "not namespaced"},
		{key: "kernel.hostname", value: "x", want: "set the hostname with --hostname instead"},
		{key: "net.ipv4.ip_forward", value: "1", hostNet: true, want: "not allowed in the host's network namespace (--network host)"},
		{key: "kernel.shmmax", value: "1", ipc: "host", want: "not allowed with the host's IPC namespace (--ipc host)"},
		{key: "fs.mqueue.msg_max", value: "1", ipc: "host", want: "not allowed with the host's IPC namespace"},
		{key: "net.ipv4.nosuch", value: "1", want: "no such sysctl in the container's network namespace"},
		{key: "net.ipv4.conf.eth0.forwarding", value: "1", want: "no such sysctl in the container's network namespace"},
		{key: "fs.mqueue.nosuch", value: "1", want: "no such sysctl in this kernel"},
		{key: "net/ipv4/ip_forward", value: "1", want: "not a sysctl name"},
		{key: "net.ipv4..ip_forward", value: "1", want: "not a sysctl name"},
		{key: "net.ipv4.ip_forward.", value: "1", want: "not a sysctl name"},
		{key: "", value: "1", want: "not a sysctl name"},
		{key: "net.ipv4.ip forward", value: "1", want: "not a sysctl name"},
		{key: "net.ipv4.ip_forward", value: "1\n0", want: "the value must be one line"},
	} {
		s := e.spec(t, "true")
		s.Sysctls = map[string]string{tc.key: tc.value}
		s.IPC = tc.ipc
		if tc.hostNet {
			s.NetNSPath = ""
		}
		_, err := e.rt.Create(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q=%q: %v, want one line with %q", tc.key, tc.value, err, tc.want)
		}
		if ids, _ := e.rt.List(); len(ids) != 0 {
			t.Errorf("%q: a refused create left %q", tc.key, ids)
		}
	}
	// accepted: a namespaced sysctl, kernel.domainname
	s := e.spec(t, "sh", "-c", "cat /proc/sys/net/ipv4/ip_forward /proc/sys/kernel/domainname")
	s.Sysctls = map[string]string{"net.ipv4.ip_forward": "1", "kernel.domainname": "example.test"}
	if out, errOut, code := e.run(t, s); out != "1\nexample.test\n" || code != 0 {
		t.Errorf("namespaced sysctls: %q %q %d", out, errOut, code)
	}
}

// TestMountPoints: missing mount points are made, for overlay images in
// the writable layer and for the read-only host image without writing to
// the host.
func TestMountPoints(t *testing.T) {
	e := newEnv(t, "runc")
	src := t.TempDir()
	writeFile(t, filepath.Join(src, "f"), "in dir\n")
	file := filepath.Join(t.TempDir(), "cfg")
	writeFile(t, file, "a file\n")
	// an image whose /var/run is an absolute symlink to /run, as Debian's
	linked := e.layerOver(t, func(dir string) {
		os.MkdirAll(filepath.Join(dir, "var"), 0o755)
		os.MkdirAll(filepath.Join(dir, "run"), 0o755)
		if err := os.Symlink("/run", filepath.Join(dir, "var/run")); err != nil {
			t.Fatal(err)
		}
	})
	host := image.HostImage()
	for _, tc := range []struct {
		name string
		img  image.Image
	}{{"busybox", e.img}, {"host", host}, {"symlinked", linked}} {
		t.Run(tc.name, func(t *testing.T) {
			s := e.spec(t, "sh", "-c", "cat /rt-sock/f /rt-deep/a/b/c/f /etc/rt-cfg /rt-new/sub/cfg /var/run/rt-x.sock /etc/rt-extra; test -d /rt-sock && test -f /etc/rt-cfg && echo types-ok")
			s.Image = tc.img
			s.Mounts = []ocirt.Mount{
				{Source: src, Destination: "/rt-sock"},
				{Source: src, Destination: "/rt-deep/a/b/c", ReadOnly: true},
				{Source: file, Destination: "/etc/rt-cfg"},
				{Source: file, Destination: "/rt-new/sub/cfg"},
				{Source: file, Destination: "/var/run/rt-x.sock"},
			}
			s.EtcFiles = map[string][]byte{"/etc/rt-extra": []byte("etc file\n")}
			out, errOut, code := e.run(t, s)
			if want := "in dir\nin dir\na file\na file\na file\netc file\ntypes-ok\n"; out != want || code != 0 {
				t.Errorf("output %q %q %d, want %q", out, errOut, code, want)
			}
			for _, p := range []string{"/rt-sock", "/rt-deep", "/etc/rt-cfg", "/rt-new", "/run/rt-x.sock", "/etc/rt-extra"} {
				if _, err := os.Lstat(p); err == nil {
					t.Errorf("%s was made on the host", p)
				}
			}
			if tc.img.HostRoot {
				return
			}
			upper := filepath.Join(e.dir, "data", s.ID, "upper")
			sock := "var/run/rt-x.sock"
			if tc.name == "symlinked" {
				sock = "run/rt-x.sock" // where /var/run/rt-x.sock leads inside the image
			}
			for _, p := range []string{"rt-sock", "rt-deep/a/b/c", "etc/rt-cfg", sock} {
				if _, err := os.Lstat(filepath.Join(upper, p)); err != nil {
					t.Errorf("mount point %s not in the writable layer: %v", p, err)
				}
			}
		})
	}
	// the host image stays read-only with its mount points made
	s := e.spec(t, "sh", "-c", "touch /rt-sock/../rt-x 2>&1; touch /usr/rt-x 2>&1; true")
	s.Image, s.Mounts = host, []ocirt.Mount{{Source: src, Destination: "/rt-sock"}}
	if out, _, _ := e.run(t, s); strings.Count(out, "Read-only file system") != 2 {
		t.Errorf("host image writable: %q", out)
	}
}

func TestMountPointsRefused(t *testing.T) {
	e := newEnv(t, "runc")
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	writeFile(t, file, "x")
	missing := filepath.Join(dir, "missing")
	host := image.HostImage()
	for _, tc := range []struct {
		img    image.Image
		mounts []ocirt.Mount
		want   string
	}{
		{e.img, []ocirt.Mount{{Source: dir, Destination: "relative"}}, "both paths must be absolute"},
		{e.img, []ocirt.Mount{{Source: "relative", Destination: "/x"}}, "both paths must be absolute"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: ""}}, "both paths must be absolute"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/proc/rt"}}, "cannot mount on /proc or inside it"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/proc"}}, "cannot mount on /proc or inside it"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/x/../proc/sys"}}, "cannot mount on /proc or inside it"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/"}}, "cannot mount over the container's /"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/a"}, {Source: file, Destination: "/a/"}}, "/a is the destination of another volume too"},
		{e.img, []ocirt.Mount{{Source: file, Destination: "/etc"}}, "/etc is a directory in the image but " + file + " is not a directory"},
		{host, []ocirt.Mount{{Source: file, Destination: "/etc"}}, "/etc is a directory in the image"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/etc/passwd"}}, "/etc/passwd is a file in the image but " + dir + " is a directory"},
		{e.img, []ocirt.Mount{{Source: dir, Destination: "/etc/passwd/x"}}, "/etc/passwd is not a directory"},
		{e.img, []ocirt.Mount{{Source: missing, Destination: "/etc/passwd"}, {Source: file, Destination: "/"}}, "cannot mount over"},
	} {
		s := e.spec(t, "true")
		s.Image, s.Mounts = tc.img, tc.mounts
		_, err := e.rt.Create(context.Background(), s)
		if err == nil || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%+v: %v, want one line with %q", tc.mounts, err, tc.want)
		}
		if ids, _ := e.rt.List(); len(ids) != 0 {
			t.Errorf("%+v: a refused create left %q", tc.mounts, ids)
		}
		if _, err := os.Stat(missing); err == nil {
			t.Errorf("%+v: a refused create made the missing source %s", tc.mounts, missing)
		}
	}
}
