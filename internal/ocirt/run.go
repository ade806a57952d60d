package ocirt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// Run runs the container in the foreground and returns its exit code
// (128+signal when killed). With Tty, stdin and stdout must be the caller's
// terminal (*os.File): the OCI runtime puts it in raw mode and relays the
// container's pty, window size changes included. Cancelling ctx sends
// SIGTERM to the container.
func (c *Container) Run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	cmd := c.r.command(context.Background(), "run", "--bundle", c.p.dir, c.ID)
	if c.meta.Interactive || c.meta.Tty {
		cmd.Stdin = stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := writeStatus(c.p, statusFile{StartedAt: time.Now().UTC()}); err != nil {
		return -1, fmt.Errorf("container %s: %w", c.ID, err)
	}
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("container %s: %w", c.ID, err)
	}
	// the OCI runtime forwards signals it gets to the container
	stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	err := cmd.Wait()
	code := 0
	var ee *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &ee):
		code = exitCode(ee.ProcessState.Sys().(syscall.WaitStatus))
	default:
		return -1, fmt.Errorf("container %s: %w", c.ID, err)
	}
	st, _ := readStatus(c.p)
	st.ExitCode, st.FinishedAt = code, time.Now().UTC()
	if err := writeStatus(c.p, st); err != nil {
		return code, fmt.Errorf("container %s: %w", c.ID, err)
	}
	return code, nil
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// monitorEnv carries the monitor's arguments to the re-executed binary.
const monitorEnv = "_CTNET_OCIRT_MONITOR"

type monitorArgs struct {
	Binary, Root, Bundle, ID string
	OnExit                   []string `json:",omitempty"`
}

// Start runs the container detached: a monitor process (this binary
// re-executed, see MaybeRunMonitor) starts it with stdout and stderr appended
// to LogPath, stays as its subreaper and records the exit code. Start returns
// once the container runs. A Tty is not given to detached containers.
func (c *Container) Start(ctx context.Context) error {
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("container %s: find own binary for the monitor: %w", c.ID, err)
	}
	args, err := json.Marshal(monitorArgs{Binary: c.r.Binary, Root: filepath.Join(c.r.stateDir, "runc"), Bundle: c.p.dir, ID: c.ID, OnExit: c.meta.OnExit})
	if err != nil {
		return err
	}
	if c.meta.Tty {
		// detached containers have no terminal to attach to
		var spec map[string]any
		b, err := os.ReadFile(filepath.Join(c.p.dir, "config.json"))
		if err == nil {
			err = json.Unmarshal(b, &spec)
		}
		if err != nil {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
		spec["process"].(map[string]any)["terminal"] = false
		if err := writeJSON(filepath.Join(c.p.dir, "config.json"), spec); err != nil {
			return fmt.Errorf("container %s: %w", c.ID, err)
		}
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	defer pr.Close()
	mlog, err := os.OpenFile(filepath.Join(c.p.dir, "monitor.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		pw.Close()
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	defer mlog.Close()
	cmd := exec.Command(self)
	cmd.Args[0] = "ctnet-monitor"
	cmd.Env = append(os.Environ(), monitorEnv+"="+string(args))
	cmd.Stdout, cmd.Stderr = mlog, mlog
	cmd.ExtraFiles = []*os.File{pw}
	cmd.Dir = c.p.dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	err = cmd.Start()
	pw.Close()
	if err != nil {
		return fmt.Errorf("container %s: start monitor: %w", c.ID, err)
	}
	go cmd.Wait() // reap it if it ends while we still run; otherwise init does
	reply, _ := io.ReadAll(pr)
	if msg := strings.TrimSpace(string(reply)); msg != "ok" {
		if msg == "" {
			msg = "monitor exited without starting it (see monitor.log)"
		}
		return fmt.Errorf("container %s: start: %s", c.ID, msg)
	}
	return nil
}

// MaybeRunMonitor must be called first thing in main (and in TestMain of
// tests that Start containers): when this process is a container monitor
// started by Start, it runs the monitor and exits; otherwise it returns at
// once.
func MaybeRunMonitor() {
	arg := os.Getenv(monitorEnv)
	if arg == "" {
		return
	}
	os.Unsetenv(monitorEnv)
	os.Exit(runMonitor(arg))
}

func runMonitor(arg string) int {
	report := os.NewFile(3, "report")
	fail := func(err error) int {
		fmt.Fprintln(report, err)
		fmt.Fprintln(os.Stderr, "monitor:", err)
		return 1
	}
	var a monitorArgs
	if err := json.Unmarshal([]byte(arg), &a); err != nil {
		return fail(err)
	}
	p := &paths{dir: a.Bundle}
	// the container's init is re-parented to us when the runtime exits
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("become subreaper: %w", err))
	}
	logf, err := os.OpenFile(p.log(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fail(err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	pidFile := filepath.Join(a.Bundle, "init.pid")
	cmd := exec.Command(a.Binary, "--root", a.Root, "run", "--detach", "--bundle", a.Bundle, "--pid-file", pidFile, a.ID)
	cmd.Stdout, cmd.Stderr = logf, logf // the container inherits these
	started := time.Now().UTC()
	if err := cmd.Run(); err != nil {
		// the runtime's own complaint went to the log: move it to the error
		msg, _ := os.ReadFile(p.log())
		if int64(len(msg)) >= logStart {
			msg = msg[logStart:]
		}
		logf.Truncate(logStart)
		return fail(fmt.Errorf("%s run: %s: %w", filepath.Base(a.Binary), strings.TrimSpace(string(msg)), err))
	}
	logf.Close()
	b, err := os.ReadFile(pidFile)
	if err != nil {
		return fail(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return fail(fmt.Errorf("pid file %s: %w", pidFile, err))
	}
	st := statusFile{Pid: pid, MonitorPid: os.Getpid(), StartedAt: started}
	if err := writeStatus(p, st); err != nil {
		return fail(err)
	}
	fmt.Fprintln(report, "ok")
	report.Close()

	var ws unix.WaitStatus
	for {
		_, err := unix.Wait4(pid, &ws, 0, nil)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "monitor: wait for", pid, err)
			st.ExitCode = -1
		} else {
			st.ExitCode = exitCode(syscall.WaitStatus(ws))
		}
		break
	}
	// reap anything else re-parented to us (daemonised grandchildren)
	for {
		if _, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); err != nil {
			break
		}
	}
	st.FinishedAt = time.Now().UTC()
	if err := writeStatus(p, st); err != nil {
		fmt.Fprintln(os.Stderr, "monitor:", err)
		return 1
	}
	if len(a.OnExit) > 0 {
		hook := exec.Command(a.OnExit[0], a.OnExit[1:]...)
		hook.Dir = "/" // the hook may remove the bundle we run in
		hook.Stdout, hook.Stderr = os.Stderr, os.Stderr
		if err := hook.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "monitor: on-exit hook:", err)
			return 1
		}
	}
	return 0
}

// ExecSpec is a process to run in a running container.
type ExecSpec struct {
	Args             []string
	Env              []string // added to the container's environment
	Tty, Interactive bool
	WorkDir, User    string // "" keeps the container's; User is "uid[:gid]"
}

// Exec runs a process in a running container in the foreground and returns
// its exit code. With Tty, stdin and stdout must be the caller's terminal.
func (r *Runtime) Exec(ctx context.Context, id string, e ExecSpec, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	st, err := r.State(id)
	if err != nil {
		return -1, err
	}
	if !st.Running {
		return -1, fmt.Errorf("container %s: %w", id, ErrNotRunning)
	}
	if len(e.Args) == 0 {
		return -1, fmt.Errorf("container %s: exec: no command", id)
	}
	args := []string{"exec"}
	if e.Tty {
		args = append(args, "--tty")
		if !hasEnv(e.Env, "TERM") {
			e.Env = append(e.Env, "TERM=xterm")
		}
	}
	for _, kv := range e.Env {
		args = append(args, "--env", kv)
	}
	if e.WorkDir != "" {
		args = append(args, "--cwd", e.WorkDir)
	}
	if e.User != "" {
		args = append(args, "--user", e.User)
	}
	args = append(args, id)
	args = append(args, e.Args...)
	cmd := r.command(context.Background(), args...)
	if e.Interactive || e.Tty {
		cmd.Stdin = stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if err := cmd.Start(); err != nil {
		return -1, fmt.Errorf("container %s: exec: %w", id, err)
	}
	stop := context.AfterFunc(ctx, func() { cmd.Process.Signal(syscall.SIGTERM) })
	defer stop()
	err = cmd.Wait()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, nil
	case errors.As(err, &ee):
		return exitCode(ee.ProcessState.Sys().(syscall.WaitStatus)), nil
	default:
		return -1, fmt.Errorf("container %s: exec: %w", id, err)
	}
}
