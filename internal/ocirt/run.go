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
// SIGTERM to the container. When the container's command cannot be
// started the error is a *StartError whose code (127 not found, 126 not
// executable, 125 other) is also returned and recorded as the exit code.
func (c *Container) Run(ctx context.Context, stdin io.Reader, stdout, stderr io.Writer) (int, error) {
	if err := writeStatus(c.p, statusFile{StartedAt: time.Now().UTC()}); err != nil {
		return -1, fmt.Errorf("container %s: %w", c.ID, err)
	}
	code, err := c.r.foreground(ctx, c.ID, c.p.dir, "run", []string{"--bundle", c.p.dir, c.ID},
		c.meta.Interactive || c.meta.Tty, stdin, stdout, stderr)
	var se *StartError
	if err != nil && !errors.As(err, &se) {
		return code, err
	}
	st, _ := readStatus(c.p)
	st.ExitCode, st.FinishedAt = code, time.Now().UTC()
	if werr := writeStatus(c.p, st); werr != nil && err == nil {
		err = fmt.Errorf("container %s: %w", c.ID, werr)
	}
	return code, err
}

func exitCode(ws syscall.WaitStatus) int {
	if ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ws.ExitStatus()
}

// monitorEnv names, for the re-executed binary, the file in the bundle
// that holds the monitor's arguments (they can outgrow an environment
// variable: the ports of a range of thousands, say).
const monitorEnv = "_CTNET_OCIRT_MONITOR"

type monitorArgs struct {
	Binary, Root, Bundle, Log, ID string
	OnExit                        []string        `json:",omitempty"`
	Watch                         json.RawMessage `json:",omitempty"`
}

// monitorReport is what the monitor tells Start, as one JSON line.
type monitorReport struct {
	OK   bool   `json:",omitempty"`
	Code int    `json:",omitempty"` // a StartError's; 0 for a monitor failure
	Msg  string `json:",omitempty"`
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
	args, err := json.Marshal(monitorArgs{Binary: c.r.Binary, Root: c.r.ociRoot(), Bundle: c.p.dir, Log: c.p.log(), ID: c.ID, OnExit: c.meta.OnExit, Watch: c.meta.Watch})
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
	argsFile := filepath.Join(c.p.dir, "monitor.json")
	if err := os.WriteFile(argsFile, args, 0o600); err != nil {
		return fmt.Errorf("container %s: %w", c.ID, err)
	}
	cmd.Env = append(os.Environ(), monitorEnv+"="+argsFile)
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
	var rep monitorReport
	if err := json.Unmarshal(reply, &rep); err != nil {
		return fmt.Errorf("container %s: start: the monitor exited without starting it (see %s)", c.ID, filepath.Join(c.p.dir, "monitor.log"))
	}
	switch {
	case rep.OK:
		return nil
	case rep.Code != 0:
		return &StartError{ID: c.ID, Code: rep.Code, Msg: rep.Msg}
	default:
		return fmt.Errorf("container %s: start: %s", c.ID, rep.Msg)
	}
}

// MaybeRunMonitor must be called first thing in main (and in TestMain of
// tests that Start containers): when this process is a container monitor
// started by Start, it runs the monitor and exits; otherwise it returns at
// once. watch, if not nil, runs while the container does, given Spec.Watch
// (the caller's own work for the monitor, such as keeping a service
// alive), until its context ends.
func MaybeRunMonitor(watch func(ctx context.Context, spec json.RawMessage)) {
	arg := os.Getenv(monitorEnv)
	if arg == "" {
		return
	}
	os.Unsetenv(monitorEnv)
	os.Exit(runMonitor(arg, watch))
}

func runMonitor(arg string, watch func(context.Context, json.RawMessage)) int {
	report := os.NewFile(3, "report")
	send := func(r monitorReport) {
		b, _ := json.Marshal(r)
		report.Write(append(b, '\n'))
	}
	fail := func(err error) int {
		send(monitorReport{Msg: err.Error()})
		fmt.Fprintln(os.Stderr, "monitor:", err)
		return 1
	}
	b, err := os.ReadFile(arg)
	if err != nil {
		return fail(err)
	}
	var a monitorArgs
	if err := json.Unmarshal(b, &a); err != nil {
		return fail(err)
	}
	p := &paths{dir: a.Bundle}
	// the container's init is re-parented to us when the runtime exits
	if err := unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0); err != nil {
		return fail(fmt.Errorf("become subreaper: %w", err))
	}
	logf, err := os.OpenFile(a.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o640)
	if err != nil {
		return fail(err)
	}
	logStart, _ := logf.Seek(0, io.SeekEnd)
	pidFile := filepath.Join(a.Bundle, "init.pid")
	runtimeLog := filepath.Join(a.Bundle, "runtime.log")
	cmd := exec.Command(a.Binary, "--root", a.Root, "--log", runtimeLog, "--log-format", "json",
		"run", "--detach", "--bundle", a.Bundle, "--pid-file", pidFile, a.ID)
	cmd.Stdout, cmd.Stderr = logf, logf // the container inherits these
	started := time.Now().UTC()
	if err := cmd.Run(); err != nil {
		// the runtime repeats its reason on stderr, the container's log:
		// take it out, and report it from the runtime's own log
		logf.Truncate(logStart)
		msg := runtimeLogMessage(runtimeLog)
		if msg == "" {
			return fail(fmt.Errorf("%s run: %w", filepath.Base(a.Binary), err))
		}
		se := startError(a.ID, msg)
		st := statusFile{ExitCode: se.Code, FinishedAt: time.Now().UTC()}
		if err := writeStatus(p, st); err != nil {
			fmt.Fprintln(os.Stderr, "monitor:", err)
		}
		send(monitorReport{Code: se.Code, Msg: se.Msg})
		return 1
	}
	logf.Close()
	b, err = os.ReadFile(pidFile)
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
	send(monitorReport{OK: true})
	report.Close()
	if watch != nil && len(a.Watch) > 0 {
		ctx, stop := context.WithCancel(context.Background())
		defer stop()
		go func() {
			// The monitor must outlive a failure of the caller's work.
			defer func() {
				if r := recover(); r != nil {
					fmt.Fprintln(os.Stderr, "monitor: watch:", r)
				}
			}()
			watch(ctx, a.Watch)
		}()
	}

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
	// reap what else ended under us (daemonised grandchildren); children
	// that live on (a resolver the watch started) are left to init
	for {
		if pid, err := unix.Wait4(-1, nil, unix.WNOHANG, nil); err != nil || pid == 0 {
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
	// WorkDir and User ("uid[:gid]" or names from the container's
	// /etc/passwd and /etc/group) override the container's when set.
	WorkDir, User string
}

// Exec runs a process in a running container in the foreground and returns
// its exit code. With Tty, stdin and stdout must be the caller's terminal.
// A command that cannot be started is a *StartError (127, 126 or 125), its
// code also returned.
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
	var args []string
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
		// the names are the container's: look them up through its own root
		u, err := resolveUser(fmt.Sprintf("/proc/%d/root", st.Pid), e.User)
		if err != nil {
			return -1, fmt.Errorf("container %s: exec: %w", id, err)
		}
		args = append(args, "--user", fmt.Sprintf("%d:%d", u.UID, u.GID))
		for _, g := range u.AdditionalGids {
			args = append(args, "--additional-gids", strconv.FormatUint(uint64(g), 10))
		}
	}
	args = append(args, id)
	args = append(args, e.Args...)
	return r.foreground(ctx, id, r.paths(id).dir, "exec", args, e.Interactive || e.Tty, stdin, stdout, stderr)
}
