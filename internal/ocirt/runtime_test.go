package ocirt_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/ctnet/ctnet/internal/image"
	"github.com/ctnet/ctnet/internal/image/imagetest"
	"github.com/ctnet/ctnet/internal/ocirt"
)

func TestNewMissingBinary(t *testing.T) {
	_, err := ocirt.New("rt-no-such-runtime", t.TempDir(), t.TempDir())
	if err == nil || !strings.Contains(err.Error(), `runtime "rt-no-such-runtime" not found in PATH; install it`) {
		t.Fatalf("error = %v", err)
	}
}

func TestNewNeedsTwoDirectories(t *testing.T) {
	if _, err := exec.LookPath("runc"); err != nil {
		t.Skip("runc not installed")
	}
	dir := t.TempDir()
	for _, dirs := range [][2]string{{dir, dir}, {dir, dir + "/."}, {"", dir}, {dir, ""}} {
		if _, err := ocirt.New("runc", dirs[0], dirs[1]); err == nil {
			t.Errorf("New(%q, %q) accepted", dirs[0], dirs[1])
		}
	}
}

func TestRunForeground(t *testing.T) {
	for _, binary := range []string{"runc", "crun"} {
		t.Run(binary, func(t *testing.T) {
			if _, err := exec.LookPath(binary); err != nil {
				t.Skipf("%s not installed (apt-get install -y %s)", binary, binary)
			}
			e := newEnv(t, binary)
			for _, tc := range []struct {
				args           []string
				stdout, stderr string
				code           int
			}{
				{args: []string{"echo", "hi"}, stdout: "hi\n"},
				{args: []string{"sh", "-c", "exit 3"}, code: 3},
				{args: []string{"sh", "-c", "echo oops >&2; exit 1"}, stderr: "oops\n", code: 1},
				{args: []string{"sh", "-c", "hostname; id -u; pwd; echo $HOSTNAME"}, stdout: "box\n0\n/\nbox\n"},
			} {
				s := e.spec(t, tc.args...)
				s.Hostname = "box"
				var o, er bytes.Buffer
				code, err := e.create(t, s).Run(context.Background(), nil, &o, &er)
				if err != nil && strings.Contains(err.Error(), "cgroups in hybrid mode not supported") {
					// crun 1.8 refuses a cgroup v1/v2 hybrid with controllers on v2
					t.Skipf("%s cannot run on this machine's cgroup layout: %v", binary, err)
				}
				if err != nil {
					t.Fatal(err)
				}
				out, errOut := o.String(), er.String()
				if out != tc.stdout || errOut != tc.stderr || code != tc.code {
					t.Errorf("%q: stdout %q stderr %q code %d; want %q %q %d", tc.args, out, errOut, code, tc.stdout, tc.stderr, tc.code)
				}
				st, err := e.rt.State(s.ID)
				if err != nil || st.Running || st.Status != "exited" || st.ExitCode != tc.code || st.FinishedAt.Before(st.StartedAt) {
					t.Errorf("%q: state %+v, %v", tc.args, st, err)
				}
			}
		})
	}
}

func TestLoadedImageLayers(t *testing.T) {
	e := newEnv(t, "runc")
	s, err := image.Open(filepath.Join(e.dir, "images"))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Load(bytes.NewReader(imagetest.BusyboxDockerArchive(t, "busybox:2")), nil); err != nil {
		t.Fatal(err)
	}
	img, err := s.Get("busybox:2")
	if err != nil {
		t.Fatal(err)
	}
	spec := e.spec(t, ocirt.ResolveArgs(img.Config, []string{"sh", "-c", "cat /etc/motd; ls /data; test -e /etc/gone || echo gone; echo w > /etc/new; cat /etc/new"})...)
	spec.Image = img
	out, _, code := e.run(t, spec)
	if want := "ctnet test image\nnew\ngone\nw\n"; out != want || code != 0 {
		t.Errorf("output %q code %d; want %q", out, code, want)
	}
	if _, err := os.Stat(filepath.Join(img.Layers[0], "etc/new")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a container write reached the image layer: %v", err)
	}
}

func TestEtcFilesAndVolumes(t *testing.T) {
	e := newEnv(t, "runc")
	rw, ro := filepath.Join(e.dir, "rw"), filepath.Join(e.dir, "ro")
	os.MkdirAll(ro, 0o755)
	os.WriteFile(filepath.Join(ro, "keep"), []byte("ro data\n"), 0o644)
	s := e.spec(t, "sh", "-c", "cat /etc/hosts /etc/hostname /etc/resolv.conf /ro/keep; echo x > /rw/f; echo y > /ro/f")
	s.EtcFiles = map[string][]byte{
		"/etc/hosts":       []byte("127.0.0.1 localhost\n203.0.113.5 peer\n"),
		"/etc/hostname":    []byte("box\n"),
		"/etc/resolv.conf": []byte("nameserver 127.0.0.11\n"),
	}
	s.Mounts = []ocirt.Mount{{Source: rw, Destination: "/rw"}, {Source: ro, Destination: "/ro", ReadOnly: true}}
	out, errOut, code := e.run(t, s)
	if want := "127.0.0.1 localhost\n203.0.113.5 peer\nbox\nnameserver 127.0.0.11\nro data\n"; out != want {
		t.Errorf("output %q, want %q", out, want)
	}
	if code == 0 || !strings.Contains(errOut, "Read-only file system") {
		t.Errorf("write to a read-only volume: code %d stderr %q", code, errOut)
	}
	if b, err := os.ReadFile(filepath.Join(rw, "f")); err != nil || string(b) != "x\n" {
		t.Errorf("rw volume: %q, %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(ro, "f")); err == nil {
		t.Error("write went through the read-only volume")
	}
}

func TestDetached(t *testing.T) {
	e := newEnv(t, "runc")
	s := e.spec(t, "sh", "-c", "trap 'echo bye; exit 0' TERM; echo started; while :; do sleep 1; done")
	s.EtcFiles = map[string][]byte{"/etc/hosts": []byte("203.0.113.5 old\n")}
	e.start(t, s)
	st, err := e.rt.State(s.ID)
	if err != nil || !st.Running || st.Pid <= 0 || st.Status != "running" {
		t.Fatalf("state after start: %+v, %v", st, err)
	}
	logMonitorMemory(t, filepath.Join(e.dir, "run", s.ID, "status.json"))
	if err := e.rt.WriteEtcFile(s.ID, "/etc/hosts", []byte("203.0.113.6 new\n")); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		args []string
		out  string
		code int
	}{
		{[]string{"cat", "/etc/hosts"}, "203.0.113.6 new\n", 0},
		{[]string{"sh", "-c", "exit 5"}, "", 5},
		{[]string{"ip", "-o", "link"}, "", 0},
	} {
		out, code := e.exec(t, s.ID, tc.args...)
		if tc.args[0] == "ip" {
			// the test's own netns has only lo
			if !strings.Contains(out, ": lo:") || strings.Count(out, "\n") != 1 {
				t.Errorf("ip link in the container's netns: %q", out)
			}
			continue
		}
		if out != tc.out || code != tc.code {
			t.Errorf("exec %q: %q %d; want %q %d", tc.args, out, code, tc.out, tc.code)
		}
	}
	if err := e.rt.Stop(context.Background(), s.ID, time.Minute); err != nil {
		t.Fatal(err)
	}
	st, err = e.rt.State(s.ID)
	if err != nil || st.Running || st.Status != "exited" || st.ExitCode != 0 || st.FinishedAt.IsZero() {
		t.Errorf("state after stop: %+v, %v", st, err)
	}
	if b, err := os.ReadFile(e.rt.LogPath(s.ID)); err != nil || string(b) != "started\nbye\n" {
		t.Errorf("log = %q, %v", b, err)
	}
	if err := e.rt.Kill(s.ID, syscall.SIGTERM); !errors.Is(err, ocirt.ErrNotRunning) {
		t.Errorf("kill of a stopped container: %v", err)
	}
	if _, err := e.rt.Exec(context.Background(), s.ID, ocirt.ExecSpec{Args: []string{"true"}}, nil, io.Discard, io.Discard); !errors.Is(err, ocirt.ErrNotRunning) {
		t.Errorf("exec in a stopped container: %v", err)
	}

	// PID 1 without a TERM handler ignores TERM: Stop falls back to KILL
	s2 := e.spec(t, "sleep", "1000")
	e.start(t, s2)
	if err := e.rt.Stop(context.Background(), s2.ID, 0); err != nil {
		t.Fatal(err)
	}
	if st, err := e.rt.State(s2.ID); err != nil || st.ExitCode != 137 {
		t.Errorf("killed container: %+v, %v", st, err)
	}

	s3 := e.spec(t, "sh", "-c", "echo out; echo err >&2; exit 4")
	e.start(t, s3)
	if code, err := e.rt.Wait(context.Background(), s3.ID); err != nil || code != 4 {
		t.Errorf("wait = %d, %v", code, err)
	}
	if b, _ := os.ReadFile(e.rt.LogPath(s3.ID)); string(b) != "out\nerr\n" {
		t.Errorf("log = %q", b)
	}
	ids, err := e.rt.List()
	if err != nil || len(ids) != 3 {
		t.Errorf("list = %q, %v", ids, err)
	}
	// running containers are refused without force; deletes are idempotent
	s4 := e.spec(t, "sleep", "1000")
	e.start(t, s4)
	if err := e.rt.Delete(s4.ID, false); err == nil {
		t.Error("deleted a running container without force")
	}
	for i := 0; i < 2; i++ {
		if err := e.rt.Delete(s4.ID, true); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := e.rt.State(s4.ID); !errors.Is(err, ocirt.ErrNotFound) {
		t.Errorf("state of a deleted container: %v", err)
	}
}

func TestStartFailureReported(t *testing.T) {
	e := newEnv(t, "runc")
	s := e.spec(t, "/no/such/binary")
	c := e.create(t, s)
	err := c.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "no/such/binary") {
		t.Errorf("start of a missing command: %v", err)
	}
}

func TestCreateUndo(t *testing.T) {
	e := newEnv(t, "runc")
	for _, mutate := range []func(*ocirt.Spec){
		func(s *ocirt.Spec) { s.IPC = "container:rt-nope" },
		func(s *ocirt.Spec) { s.User = "nosuchuser" },
		func(s *ocirt.Spec) { s.Mounts = []ocirt.Mount{{Source: "relative", Destination: "/x"}} },
	} {
		s := e.spec(t, "true")
		mutate(&s)
		if _, err := e.rt.Create(context.Background(), s); err == nil {
			t.Errorf("%+v: created", s)
		}
		if ids, _ := e.rt.List(); len(ids) != 0 {
			t.Errorf("failed create left %q", ids)
		}
	}
	if err := e.rt.Delete("rt-never-existed", false); err != nil {
		t.Errorf("delete of a missing container: %v", err)
	}
}

func TestUnixSocketBetweenContainers(t *testing.T) {
	e := newEnv(t, "runc")
	bin := helperDir(t, "unixsock")
	shared := filepath.Join(e.dir, "shared")
	os.MkdirAll(shared, 0o755)
	if err := syscall.Mkfifo(filepath.Join(shared, "ready"), 0o600); err != nil {
		t.Fatal(err)
	}
	vols := []ocirt.Mount{{Source: shared, Destination: "/shared"}, {Source: bin, Destination: "/helper", ReadOnly: true}}

	a := e.spec(t, "/helper/unixsock", "listen:/shared/sock:/shared/ready")
	a.Mounts = vols
	e.start(t, a)
	// opening the FIFO blocks until the listener has bound its socket
	if b, err := os.ReadFile(filepath.Join(shared, "ready")); err != nil || string(b) != "ready\n" {
		t.Fatalf("listener readiness: %q, %v", b, err)
	}
	b := e.spec(t, "/helper/unixsock", "send:/shared/sock:hello")
	b.Mounts = vols
	b.NetNSPath = newNetNS(t, t.TempDir()) // another network: only the socket file connects them
	out, errOut, code := e.run(t, b)
	if out != "pong:hello\n" || code != 0 {
		t.Errorf("sender: %q %q %d", out, errOut, code)
	}
	if code, err := e.rt.Wait(context.Background(), a.ID); err != nil || code != 0 {
		t.Errorf("listener exit: %d, %v", code, err)
	}
	if log, _ := os.ReadFile(e.rt.LogPath(a.ID)); string(log) != "got hello\n" {
		t.Errorf("listener log %q", log)
	}
}

func TestIPCShareable(t *testing.T) {
	e := newEnv(t, "runc")
	for _, tool := range []string{"ipcmk", "ipcs", "sleep"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not on the host (busybox-static has no ipcmk/ipcs; util-linux does)", tool)
		}
	}
	// busybox-static has no SysV IPC tools: the host image brings util-linux's
	host := image.HostImage()
	a := e.spec(t, "sleep", "1000")
	a.Image, a.IPC = host, "shareable"
	e.start(t, a)
	out, code := e.exec(t, a.ID, "sh", "-c", "ipcmk -M 4096 && echo posix > /dev/shm/rt-x")
	if code != 0 || !strings.Contains(out, "Shared memory id:") {
		t.Fatalf("ipcmk: %q %d", out, code)
	}
	shmid := strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(out), "Shared memory id:"))

	for _, tc := range []struct {
		ipc  string
		want bool
	}{
		{"container:" + a.ID, true},
		{"container:" + e.rt.IPCNSPath(a.ID), true},
		{"private", false},
	} {
		b := e.spec(t, "sh", "-c", "ipcs -m; cat /dev/shm/rt-x 2>/dev/null; true")
		b.Image, b.IPC = host, tc.ipc
		out, errOut, code := e.run(t, b)
		seen := false
		for _, line := range strings.Split(out, "\n") {
			if f := strings.Fields(line); len(f) > 1 && f[1] == shmid {
				seen = true
			}
		}
		if seen != tc.want || code != 0 {
			t.Errorf("ipc %s: segment %s seen=%v want %v (code %d): %q %q", tc.ipc, shmid, seen, tc.want, code, out, errOut)
		}
		if tc.ipc == "container:"+a.ID && !strings.Contains(out, "posix") {
			t.Errorf("ipc %s: /dev/shm not shared: %q", tc.ipc, out)
		}
	}
}

func TestInteractiveTTY(t *testing.T) {
	e := newEnv(t, "runc")
	ptmx, tty, err := pty.Open()
	if err != nil {
		t.Fatal(err)
	}
	defer ptmx.Close()
	defer tty.Close()
	s := e.spec(t, "sh")
	s.Tty, s.Interactive = true, true
	c := e.create(t, s)
	type result struct {
		code int
		err  error
	}
	done := make(chan result, 1)
	go func() {
		code, err := c.Run(context.Background(), tty, tty, tty)
		done <- result{code, err}
	}()
	chunks := make(chan []byte)
	go func() {
		for {
			b := make([]byte, 1024)
			n, err := ptmx.Read(b)
			if err != nil {
				close(chunks)
				return
			}
			chunks <- b[:n]
		}
	}()
	var screen strings.Builder
	pos := 0
	expect := func(want string) {
		t.Helper()
		for {
			if i := strings.Index(screen.String()[pos:], want); i >= 0 {
				pos += i + len(want)
				return
			}
			select {
			case b, ok := <-chunks:
				if !ok {
					t.Fatalf("pty closed waiting for %q; screen %q", want, screen.String())
				}
				screen.Write(b)
			case res := <-done:
				t.Fatalf("container ended (%d, %v) waiting for %q; screen %q", res.code, res.err, want, screen.String())
			}
		}
	}
	expect("/ # ")
	io.WriteString(ptmx, "echo hel''lo $((6*7))\r")
	expect("hello 42")
	expect("/ # ")
	io.WriteString(ptmx, "exit 7\r")
	res := <-done
	if res.err != nil || res.code != 7 {
		t.Errorf("interactive sh: code %d, %v; screen %q", res.code, res.err, screen.String())
	}
}

func TestHostImage(t *testing.T) {
	e := newEnv(t, "runc")
	s := e.spec(t, "/bin/sh", "-c", "ls /; touch /usr/rt-x; cat /etc/hostname; touch /tmp/ok && echo tmp-ok")
	s.Image = image.HostImage()
	s.EtcFiles = map[string][]byte{"/etc/hostname": []byte("hostimg\n")}
	out, errOut, code := e.run(t, s)
	for _, want := range []string{"etc\n", "usr\n", "hostimg\n", "tmp-ok\n"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q: %q", want, out)
		}
	}
	if !strings.Contains(errOut, "Read-only file system") || code != 0 {
		t.Errorf("host root should be read-only: code %d stderr %q", code, errOut)
	}
	if _, err := os.Stat("/usr/rt-x"); err == nil {
		os.Remove("/usr/rt-x")
		t.Error("the container wrote to the host's /usr")
	}
}

// TestHostNetwork only reads: "" shares the caller's network namespace, so
// the container sees the same interfaces as the test process.
func TestHostNetwork(t *testing.T) {
	e := newEnv(t, "runc")
	want, err := os.ReadFile("/proc/self/net/dev")
	if err != nil {
		t.Fatal(err)
	}
	ownNS, err := os.Readlink("/proc/self/ns/net")
	if err != nil {
		t.Fatal(err)
	}
	s := e.spec(t, "sh", "-c", "readlink /proc/self/ns/net; cat /proc/self/net/dev")
	s.NetNSPath = ""
	out, _, code := e.run(t, s)
	ns, devs, _ := strings.Cut(out, "\n")
	if code != 0 || ns != ownNS || ifaceNames(devs) != ifaceNames(string(want)) {
		t.Errorf("host mode: netns %s sees %q; the host: %s with %q", ns, ifaceNames(devs), ownNS, ifaceNames(string(want)))
	}
	s = e.spec(t, "cat", "/proc/self/net/dev")
	if out, _, _ := e.run(t, s); ifaceNames(out) != "lo" {
		t.Errorf("own netns sees %q, want only lo", ifaceNames(out))
	}
}

func ifaceNames(netdev string) string {
	var names []string
	for _, line := range strings.Split(netdev, "\n") {
		if name, _, ok := strings.Cut(line, ":"); ok && !strings.Contains(name, "|") {
			names = append(names, strings.TrimSpace(name))
		}
	}
	return strings.Join(names, ",")
}

// logMonitorMemory reports what a detached container's monitor costs.
func logMonitorMemory(t *testing.T, statusFile string) {
	var st struct{ MonitorPid int }
	b, _ := os.ReadFile(statusFile)
	if json.Unmarshal(b, &st) != nil || st.MonitorPid == 0 {
		return
	}
	status, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", st.MonitorPid))
	for _, line := range strings.Split(string(status), "\n") {
		if strings.HasPrefix(line, "VmRSS") || strings.HasPrefix(line, "RssAnon") || strings.HasPrefix(line, "Threads") {
			t.Logf("monitor %s", strings.Join(strings.Fields(line), " "))
		}
	}
}
